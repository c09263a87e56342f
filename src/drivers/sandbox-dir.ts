import { constants as fsConstants } from 'node:fs';
import { chmod, chown, mkdir, open, stat, writeFile } from 'node:fs/promises';
import type { AgentConfig } from '../protocol/agent.js';
import { AppError } from '../protocol/errors.js';
import type { Endpoint, SandboxSpec } from './driver.js';
import { pinnedSocketPaths, sandboxPaths, sandboxSocketNames } from './local-layout.js';
import { readProcStat } from './proc-scan.js';
import { inside } from './sandbox-inside.js';

// What the drivers that keep a sandbox in <data>/sandboxes/<id>/ (local, gvisor) do alike: lay out
// its directory, write the agent's config, hand out host uids, and name its endpoints.

/** run/ and logs/ (the sandbox's uid's), sockets/ (porthole's) and host/ (porthole's, searchable) of a new sandbox. */
export async function makeSandboxDirs(dir: string, owner: { uid: number; gid: number } | null): Promise<void> {
  const paths = sandboxPaths(dir);
  for (const sub of [paths.run, paths.logs]) {
    await mkdir(sub, { mode: 0o700 });
    if (owner) await chown(sub, owner.uid, owner.gid);
  }
  await mkdir(paths.sockets, { mode: 0o700 });
  // Explicit modes where others must get through: the server's umask is 077.
  await mkdir(paths.host);
  await chmod(paths.host, 0o711);
}

/** The agent's config for this spec, at the paths every sandbox has inside (sandbox-inside.ts); written to run/agent.json. */
export async function writeAgentConfig(dir: string, spec: SandboxSpec): Promise<void> {
  const config: AgentConfig = {
    sandboxId: spec.id,
    agentSocket: inside.agentSocket,
    vncSocket: inside.vncSocket,
    width: spec.width,
    height: spec.height,
    startUrl: spec.startUrl,
    loopbackOnly: spec.loopbackOnly ?? false,
    tools: { clis: inside.clis, demoCli: inside.demoCli },
    egress: { proxySocket: inside.proxySocket, serverSocket: inside.serverSocket },
    leaseMs: spec.leaseMs ?? null,
    tunnels: [...(spec.tunnels ?? [])],
    desktop: spec.desktop ?? true,
  };
  const path = sandboxPaths(dir).agentConfig;
  await writeFile(path, `${JSON.stringify(config, null, 2)}\n`, { flag: 'wx' });
  await chmod(path, 0o644);
}

/** The server's ways into a sandbox: its sockets, pinned before use, and where it listens for it. */
export function endpointsOf(dir: string, uid: number): { vnc: Endpoint; agent: Endpoint; host: { proxySocket: string; serverSocket: string } } {
  const pinned = (name: string): Endpoint => {
    const { source, pinned: path } = pinnedSocketPaths(dir, name);
    return { kind: 'unix', path, pin: { source, uid } };
  };
  const { proxySocket, serverSocket } = sandboxPaths(dir);
  return { vnc: pinned(sandboxSocketNames.vnc), agent: pinned(sandboxSocketNames.agent), host: { proxySocket, serverSocket } };
}

/**
 * Host uids for sandboxes, one per sandbox (gid = uid): the first of the range that no sandbox
 * holds (`held`, from the driver's records), none being handed out right now, and no process of
 * the host runs as (a sandbox's processes may outlive its record for a moment; another porthole on
 * this host may use the range too). Reused only once all are gone.
 */
export class UidPool {
  private readonly pending = new Set<number>();

  constructor(
    private readonly range: { readonly first: number; readonly last: number },
    /** How long a uid counts as handed out without a record: until the driver has written it. */
    private readonly pendingMs: number,
  ) {}

  allocate(held: ReadonlySet<number>, running: ReadonlySet<number>): { uid: number; gid: number } {
    const { first, last } = this.range;
    for (let uid = first; uid <= last; uid++) {
      if (held.has(uid) || running.has(uid) || this.pending.has(uid)) continue;
      this.pending.add(uid);
      setTimeout(() => this.pending.delete(uid), this.pendingMs).unref();
      return { uid, gid: uid };
    }
    throw new Error(`no free sandbox uid in ${first}–${last} (PORTHOLE_SANDBOX_UIDS): ${held.size} held by sandboxes, ${running.size} in use by processes`);
  }
}

/**
 * What is left of the sandbox in `dir`, as readable lines: `pids` (its host processes, as the
 * driver finds them), the sockets its servers bound in run/, the directory. Empty after a
 * successful destroy. For the conformance suite and the tests' leak checks.
 */
export async function leftoversIn(dir: string, pids: readonly number[]): Promise<string[]> {
  const exists = (path: string): Promise<boolean> =>
    stat(path).then(
      () => true,
      () => false,
    );
  const left: string[] = [];
  for (const pid of pids) {
    const proc = await readProcStat(pid);
    if (proc) left.push(`process ${pid} (${proc.comm})`);
  }
  for (const socket of Object.values(sandboxSocketNames)) {
    const path = pinnedSocketPaths(dir, socket).source;
    if (await exists(path)) left.push(`socket ${path}`);
  }
  if (await exists(dir)) left.push(`directory ${dir}`);
  return left;
}

/**
 * The line of a start's log that says why it failed, for the failure's detail: the last line that
 * names an error (Node.js's `Error: EACCES: …`, bwrap's own `bwrap: …`), else the last line. Cut to
 * one line of at most 200 characters: it is the sandbox's own output.
 */
export function tellingLine(log: string | null): string | null {
  const lines = (log ?? '')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('at '));
  const line = lines.findLast((l) => /\b(\w*Error|error|bwrap|denied|failed|cannot|not found)\b/.test(l)) ?? lines.at(-1);
  if (line === undefined) return null;
  const printable = line.replace(/\p{Cc}/gu, ' ');
  return printable.length > 200 ? `${printable.slice(0, 199)}…` : printable;
}

/**
 * A driver's SANDBOX_START_FAILED for `error`: its details say where (`step`) and carry the start's
 * log; the cause's message, which a session's failure detail shows, has the log's telling line on it.
 */
export function startFailed(error: unknown, where: { sandboxId: string; driver: string; step: string }, log: string | null): AppError {
  const reason = error instanceof Error ? error.message : String(error);
  const said = tellingLine(log);
  return new AppError('SANDBOX_START_FAILED', {
    cause: said ? new Error(`${reason}; its log says: ${said}`, { cause: error }) : error,
    details: { ...where, reason, ...(log ? { log } : {}) },
  });
}

/** The last `bytes` of a log, for a start failure's details; null when there is none. */
export async function tailOf(path: string, bytes = 2048): Promise<string | null> {
  const file = await open(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW).catch(() => null);
  if (!file) return null;
  try {
    const { size } = await file.stat();
    const length = Math.min(size, bytes);
    const buffer = Buffer.alloc(length);
    await file.read(buffer, 0, length, size - length);
    return buffer.toString('utf8').trim() || null;
  } finally {
    await file.close();
  }
}
