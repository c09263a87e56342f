import { readFile, readdir, readlink, stat } from 'node:fs/promises';

// What /proc says about the sandbox's processes. The driver's state comes from here and from
// sandbox.json, never only from ChildProcess objects: after a server restart there are none.
// Every read tolerates the process vanishing meanwhile (ENOENT/ESRCH → null).

export interface ProcStat {
  readonly pid: number;
  readonly comm: string;
  /** R, S, D, Z (zombie), … */
  readonly state: string;
  readonly ppid: number;
  readonly pgid: number;
  /** Clock ticks since boot: with the pid, identifies a process across pid reuse. */
  readonly startTime: number;
  /** The kernel's PF_* flags (proc(5) field 9). */
  readonly flags: number;
}

/** PF_EXITING: the process is on its way out (a pid-namespace init waits there until its namespace is empty). */
export const processExitingFlag = 0x4;

export async function readProcStat(pid: number): Promise<ProcStat | null> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  if (text === null) return null;
  // comm is in parentheses and may itself contain spaces and parentheses: split after the last ')'.
  const close = text.lastIndexOf(')');
  const comm = text.slice(text.indexOf('(') + 1, close);
  const fields = text.slice(close + 2).split(' ');
  // fields[0] is field 3 (state) of proc(5).
  return { pid, comm, state: fields[0] ?? '?', ppid: Number(fields[1]), pgid: Number(fields[2]), flags: Number(fields[6]), startTime: Number(fields[19]) };
}

/** The inode of a process's pid namespace; null when it is gone or a zombie. */
export async function pidNamespaceOf(pid: number | 'self'): Promise<number | null> {
  const link = await readlink(`/proc/${pid}/ns/pid`).catch(() => null);
  const match = link?.match(/^pid:\[(\d+)\]$/);
  return match ? Number(match[1]) : null;
}

export async function listPids(): Promise<number[]> {
  const names = await readdir('/proc');
  return names.filter((name) => /^\d+$/.test(name)).map(Number);
}

/** The uids the host's processes run as (the owner of /proc/<pid> is the process's effective uid). */
export async function processUids(): Promise<Set<number>> {
  const uids = await Promise.all(
    (await listPids()).map((pid) =>
      stat(`/proc/${pid}`).then(
        (s) => s.uid,
        () => null,
      ),
    ),
  );
  return new Set(uids.filter((uid): uid is number => uid !== null));
}

export async function childrenOf(pid: number): Promise<ProcStat[]> {
  const stats = await Promise.all((await listPids()).map(readProcStat));
  return stats.filter((s): s is ProcStat => s !== null && s.ppid === pid);
}

/**
 * `roots` and every descendant of theirs among `all` (a process whose parent is in the set joins
 * it, until none does): a sandbox's processes from the ones that mark it.
 */
export function withDescendants(roots: Iterable<number>, all: readonly { readonly pid: number; readonly ppid: number }[]): Set<number> {
  const found = new Set(roots);
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of all) {
      if (!found.has(p.pid) && found.has(p.ppid)) {
        found.add(p.pid);
        grew = true;
      }
    }
  }
  return found;
}

export interface ScannedProcess extends ProcStat {
  readonly pidNamespace: number | null;
  /** Its environment holds the variable asked for. */
  readonly hasEnv: boolean;
}

/**
 * Every process of the host with its pid namespace, and whether its environment holds `NAME=value`
 * (bwrap's --setenv survives into the sandbox's processes, though Chromium's helpers may overwrite
 * theirs when they set their title).
 */
export async function scanProcesses(env: { name: string; value: string }): Promise<ScannedProcess[]> {
  const needle = Buffer.from(`\0${env.name}=${env.value}\0`);
  const scanned = await Promise.all(
    (await listPids()).map(async (pid): Promise<ScannedProcess | null> => {
      const [proc, pidNamespace, environ] = await Promise.all([readProcStat(pid), pidNamespaceOf(pid), readFile(`/proc/${pid}/environ`).catch(() => null)]);
      if (!proc) return null;
      const hasEnv = environ !== null && Buffer.concat([Buffer.from([0]), environ]).includes(needle);
      return { ...proc, pidNamespace, hasEnv };
    }),
  );
  return scanned.filter((p): p is ScannedProcess => p !== null);
}

/** The processes' socket inodes, from their fd links (`socket:[N]`). */
export async function socketInodesOf(pids: readonly number[]): Promise<Set<number>> {
  const inodes = new Set<number>();
  await Promise.all(
    pids.map(async (pid) => {
      const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
      await Promise.all(
        fds.map(async (fd) => {
          const link = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
          const match = link.match(/^socket:\[(\d+)\]$/);
          if (match) inodes.add(Number(match[1]));
        }),
      );
    }),
  );
  return inodes;
}
