import { chmod, lstat, mkdir, readdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { sandboxesEntry } from '../drivers/local-layout.js';

// The data directory holds porthole's secrets: the database (API key hashes, sessions, sealed
// credentials, its WAL), the ticket signing key, the credential keyring. No other local user may
// read or write any of it. Start-up makes it so: the directory 0700, the server's umask 077 for
// what is created later, PGlite's files 0600 (its filesystem chmods them itself, past the umask:
// src/store/postgres/owner-only-nodefs.ts), and what an older version left open tightened here.
// `porthole doctor` checks it with auditDataDir. The sandboxes' own directories under sandboxes/
// are the driver's: it creates them with explicit modes and owners.

/** The files that are secrets in themselves: nobody but the owner may even read them. */
export const secretEntries = ['pglite', 'keyring.json', 'signing.key'] as const;

/**
 * Creates the data directory (0700) or tightens an existing one, and takes group and other access
 * away from everything under pglite/ (an older porthole left PGlite's files 0666 and its
 * directories 0755) and from the signing key. Returns what it tightened, relative to the data
 * directory, for a warning: what was open may have been read. The keyring is not touched: a
 * keyring open to others refuses the start (MASTER_KEY_INSECURE), so that someone decides.
 * Symlinks are left alone (chmod would follow them). Idempotent.
 */
export async function prepareDataDir(dataDir: string): Promise<string[]> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const tightened: string[] = [];
  // 0711 (an older porthole's, for the sandbox uid to pass through) let nobody list or read it: not worth a warning.
  if (((await lstat(dataDir)).mode & 0o066) !== 0) tightened.push('.');
  await chmod(dataDir, 0o700);
  for (const entry of ['pglite', 'signing.key']) await tighten(dataDir, join(dataDir, entry), tightened);
  return tightened;
}

async function tighten(dataDir: string, path: string, tightened: string[]): Promise<void> {
  const found = await lstat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return null;
    throw error;
  });
  if (!found || found.isSymbolicLink()) return;
  if ((found.mode & 0o077) !== 0) {
    await chmod(path, found.mode & 0o700);
    tightened.push(relative(dataDir, path));
  }
  if (!found.isDirectory()) return;
  for (const name of await readdir(path)) await tighten(dataDir, join(path, name), tightened);
}

export interface ModeProblem {
  /** Relative to the data directory ('.' for itself). */
  readonly path: string;
  /** Octal, e.g. '0666'. */
  readonly mode: string;
  readonly problem: 'group/other access to the data directory' | 'group/other write' | 'group/other access to a secret';
}

const octal = (mode: number) => `0${(mode & 0o777).toString(8).padStart(3, '0')}`;

/**
 * What in the data directory another local user could read or change, by its modes: the
 * directory itself must be 0700; nothing in it writable by group or others; pglite/, keyring.json
 * and signing.key not even readable by them. Inside sandboxes/<id>/ only the sandbox's directory
 * itself is checked: its contents belong to the driver and the sandbox. Symlinks are not followed.
 * An absent data directory has no problems.
 */
export async function auditDataDir(dataDir: string): Promise<ModeProblem[]> {
  const problems: ModeProblem[] = [];
  const top = await lstat(dataDir).catch(() => null);
  if (!top) return problems;
  if ((top.mode & 0o077) !== 0) problems.push({ path: '.', mode: octal(top.mode), problem: 'group/other access to the data directory' });
  const walk = async (path: string, isSecret: boolean, depth: number): Promise<void> => {
    for (const name of (await readdir(path).catch(() => [] as string[])).sort()) {
      const child = join(path, name);
      const info = await lstat(child).catch(() => null);
      if (!info || info.isSymbolicLink()) continue;
      const secret = isSecret || (depth === 0 && (secretEntries as readonly string[]).includes(name));
      const where = relative(dataDir, child);
      if (secret && (info.mode & 0o077) !== 0) problems.push({ path: where, mode: octal(info.mode), problem: 'group/other access to a secret' });
      else if ((info.mode & 0o022) !== 0) problems.push({ path: where, mode: octal(info.mode), problem: 'group/other write' });
      const isSandboxDir = depth === 1 && relative(dataDir, path) === sandboxesEntry;
      if (info.isDirectory() && !isSandboxDir) await walk(child, secret, depth + 1);
    }
  };
  await walk(dataDir, false, 0);
  return problems;
}
