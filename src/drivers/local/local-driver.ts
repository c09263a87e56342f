import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, constants as fsConstants, openSync } from 'node:fs';
import { chmod, mkdir, readdir, rm, stat } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { join, resolve } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { isSandboxId, type SandboxId } from '../../protocol/ids.js';
import { version } from '../../protocol/version.js';
import type { Driver, SandboxHandle, SandboxInfo, SandboxSpec } from '../driver.js';
import { bwrapArgs, bwrapFds, sandboxGroup, sandboxPasswd, type BwrapSources } from './bwrap-command.js';
import { stagedLaunch, stageDirectory } from './launcher.js';
import { describeLimitsHit, detectCgroups, noCgroups, type CgroupHost, type SandboxLimits } from '../cgroups/cgroups.js';
import { CleanupStack } from '../cleanup-stack.js';
import { childrenOf, pidNamespaceOf, processExitingFlag, processUids, readProcStat, scanProcesses, withDescendants, type ProcStat } from '../proc-scan.js';
import { readRecord, recordFile, writeRecord, type SandboxRecord } from './sandbox-record.js';
import { longestSocketPath, maxUnixPathBytes, sandboxDir, sandboxesDir, sandboxPaths } from '../local-layout.js';
import { endpointsOf, leftoversIn, makeSandboxDirs, startFailed, tailOf, UidPool, writeAgentConfig } from '../sandbox-dir.js';
import { pinTempSuffixBytes } from '../pinned-socket.js';

// The `local` driver: a sandbox is a group of processes on this host, isolated by bubblewrap (own
// user, pid, ipc, uts, network and mount namespaces; an unprivileged host uid of its own), running
// the agent, which runs the desktop. Each sandbox has a directory <dataDir>/sandboxes/<id>/, laid
// out as ../local-layout.ts says. Home and /tmp are tmpfs inside the sandbox (size-limited), never on the host's disk.
//
// State is sandbox.json plus /proc, so a server that restarts can inspect, list and destroy the
// sandboxes an earlier process started. sandbox.json sits outside home/ and run/, where the
// sandbox cannot rewrite it (and so cannot point destroy() at another process).

export interface LocalDriverOptions {
  readonly dataDir: string;
  /**
   * Host uids for sandboxes when the server runs as root, one per sandbox (gid = uid), reused only
   * once no process of the previous holder is left. Otherwise every sandbox runs as the server's uid.
   */
  readonly sandboxUids: { readonly first: number; readonly last: number };
  /** Size of the sandbox's tmpfs home; /tmp gets the same. */
  readonly homeMiB?: number;
  /** What each sandbox may use (cgroups, where this host has them); none when absent. */
  readonly limits?: SandboxLimits;
  /** The host's cgroups (tests pass their own); detected once when absent. */
  readonly cgroups?: Promise<CgroupHost>;
  /** Absolute path of dist/agent/porthole-agent.mjs. */
  readonly agentBundle: string;
  /** The pinned provider CLIs (a directory with node_modules/.bin), mounted read-only at /opt/porthole/clis. */
  readonly clis?: string;
  /** The demo provider's CLI bundle, mounted read-only at /opt/porthole/demo-cli.mjs. */
  readonly demoCli?: string;
  readonly logger?: Logger;
}

/** One process, across pid reuse. */
interface ProcessRef {
  readonly pid: number;
  readonly startTime: number;
}

interface InitRef extends ProcessRef {
  readonly pidNamespace: number;
}

const infoTimeoutMs = 15_000;
/** How long an inspect that finds the agent gone waits for its bwrap's exit status (it follows within milliseconds). */
const exitReportMs = 500;
/** The agent stops its children with TERM, then KILL after 2 s: give it that and a little more. */
const agentStopGraceMs = 2_500;
const teardownTimeoutMs = 10_000;
const sandboxIdEnv = 'PORTHOLE_SANDBOX_ID';

export function createLocalDriver(options: LocalDriverOptions): Driver {
  const isRoot = process.getuid?.() === 0;
  const homeMiB = options.homeMiB ?? 256;
  const limits = options.limits;
  const cgroups = limits ? (options.cgroups ?? detectCgroups()) : Promise.resolve(noCgroups('no limits configured'));
  // close() waits for it: a driver closed right after it was made must not log afterwards.
  const saidCgroups = cgroups.then(
    (host) => logger?.info({ cgroups: host.version, enforceable: host.enforceable }, host.why),
    () => {},
  );
  const dataDir = resolve(options.dataDir);
  const logger = options.logger?.child({ component: 'local-driver' });
  /** Outer bwrap processes this server started: how their sandboxes ended, once seen. */
  const children = new Map<string, ChildProcess>();
  const exits = new Map<string, string>();
  const uids = new UidPool(options.sandboxUids, infoTimeoutMs * 2);

  async function create(spec: SandboxSpec, createOptions: { signal?: AbortSignal } = {}): Promise<SandboxHandle> {
    const { signal } = createOptions;
    const dir = sandboxDir(dataDir, spec.id);
    const paths = sandboxPaths(dir);
    const runDir = paths.run;
    const hostDir = paths.host;
    const cleanup = new CleanupStack();
    let step = 'prepare';
    let hasSpawned = false;
    try {
      signal?.throwIfAborted();
      // The id becomes a path: only well-formed ids.
      if (!isSandboxId(spec.id)) throw new Error(`not a sandbox id: ${JSON.stringify(spec.id)}`);
      const longest = longestSocketPath(dataDir, spec.id);
      if (!longest.fits)
        throw new Error(`socket path ${longest.path} is longer than ${maxUnixPathBytes - pinTempSuffixBytes} bytes: choose a shorter data directory`);

      step = 'directories';
      await mkdir(sandboxesDir(dataDir), { recursive: true, mode: 0o700 });
      await mkdir(dir, { mode: 0o700 }); // EEXIST: a second create with the same id fails here, before any undo exists
      cleanup.push('directory', () => rm(dir, { recursive: true, force: true }));
      await stat(options.agentBundle).catch((cause: unknown) => {
        throw new Error(`agent bundle ${options.agentBundle} is missing (run node scripts/build.mjs)`, { cause });
      });
      step = 'uid';
      const { uid, gid } = isRoot ? await allocateUid(spec.id) : { uid: process.getuid!(), gid: process.getgid!() };
      step = 'cgroup';
      // Before any process of the sandbox exists: bwrap waits on its block fd until its processes are in.
      const cgroup = limits ? await (await cgroups).create(spec.id, limits) : null;
      if (cgroup) cleanup.push('cgroup', () => cgroup.remove());
      await makeSandboxDirs(dir, isRoot ? { uid, gid } : null);
      if (isRoot) {
        await mkdir(stageDirectory(), { recursive: true });
        await chmod(stageDirectory(), 0o755);
      }
      await writeAgentConfig(dir, spec);
      signal?.throwIfAborted();

      step = 'spawn';
      hasSpawned = true;
      const startedAt = new Date().toISOString();
      const child = spawnBwrap(spec.id, {
        uid,
        gid,
        sources: { run: runDir, host: hostDir, agentBundle: options.agentBundle, clis: options.clis, demoCli: options.demoCli },
        logFile: paths.agentLog,
      });
      const info = readBwrapInfo(child);
      child.once('exit', (code, sig) => {
        if (children.get(spec.id) === child) exits.set(spec.id, describeBwrapExit(code, sig));
      });
      children.set(spec.id, child);
      cleanup.push('processes', async () => {
        // Wait for the init's pid even when aborting: killing bwrap before it reports would orphan
        // a sandbox that nothing knows the pid of (the env marker still finds it, below).
        const known = await info.catch(() => null);
        await stopSandbox(spec.id, known ? await initRef(known.childPid, known.pidNamespace) : null);
        await reaped(child);
        children.delete(spec.id);
        exits.delete(spec.id);
      });

      step = 'bwrap info';
      const { childPid, pidNamespace } = await abortable(info, signal);
      // bwrap waits on its block fd before it runs the agent: the place to put its processes in
      // their limits, before any process of the person's exists.
      step = 'limits';
      for (const pid of [child.pid!, childPid]) await cgroup?.add(pid);
      unblock(child);
      const init = await initRef(childPid, pidNamespace);
      if (!init) throw new Error(`the sandbox's init (pid ${childPid}) exited at once; see ${paths.agentLog}`);

      step = 'agent';
      const agent = await waitForAgent(init, signal); // polls, and stops on abort itself

      step = 'record';
      const record: SandboxRecord = {
        id: spec.id,
        startedAt,
        width: spec.width,
        height: spec.height,
        startUrl: spec.startUrl,
        uid,
        gid,
        init,
        agent,
        createdBy: version,
      };
      await writeRecord(dir, record);
      signal?.throwIfAborted();

      cleanup.release();
      child.unref();
      logger?.info({ sandboxId: spec.id, initPid: init.pid, agentPid: agent.pid, pidNamespace: init.pidNamespace }, 'sandbox started');
      return { id: spec.id, ...endpointsOf(dir, uid) };
    } catch (error) {
      // The log is this start's only once bwrap ran (before, the directory may be another sandbox's).
      const log = hasSpawned ? await tailOf(paths.agentLog) : null;
      const failedUndos = await cleanup.unwind();
      if (failedUndos.length > 0) logger?.error({ sandboxId: spec.id, failedUndos }, 'sandbox start: cleanup failed');
      throw startFailed(error, { sandboxId: spec.id, driver: 'local', step }, log);
    }
  }

  function spawnBwrap(id: string, options: { uid: number; gid: number; sources: BwrapSources; logFile: string }): ChildProcess {
    const log = openSync(options.logFile, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_APPEND | fsConstants.O_NOFOLLOW, 0o644);
    try {
      const buildArgs = (sources: BwrapSources): string[] => bwrapArgs({ sandboxId: id, sources, homeMiB, tmpMiB: homeMiB });
      // As root: staged (launcher.ts), so that no path of the checkout or the data directory has to
      // be reachable by the sandbox's uid. Otherwise bwrap runs as this user, who reaches them all.
      const launch = isRoot
        ? stagedLaunch({ uid: options.uid, gid: options.gid, sources: options.sources, buildArgs })
        : { command: 'bwrap', args: buildArgs(options.sources) };
      const child = spawn(launch.command, launch.args, {
        // Its own process group and session, so nothing the server's group receives reaches it.
        detached: true,
        cwd: '/',
        env: { PATH: '/usr/bin:/bin', [sandboxIdEnv]: id },
        stdio: ['ignore', log, log, 'pipe', 'pipe', 'pipe', 'pipe'],
      });
      // bwrap reads these until EOF and copies them to /etc/passwd and /etc/group in the sandbox.
      for (const [fd, text] of [
        [bwrapFds.passwd, sandboxPasswd],
        [bwrapFds.group, sandboxGroup],
      ] as const) {
        const stream = (child.stdio as unknown as Array<Writable | null>)[fd]!;
        stream.on('error', () => {}); // EPIPE when bwrap fails first: its exit says why
        stream.end(text);
      }
      return child;
    } finally {
      closeSync(log);
    }
  }

  async function initRef(pid: number, pidNamespace: number): Promise<InitRef | null> {
    const proc = await readProcStat(pid);
    if (!proc || proc.state === 'Z') return null;
    return { pid, startTime: proc.startTime, pidNamespace };
  }

  /** A host uid of its own for a new sandbox (UidPool): none another record of this driver holds. */
  async function allocateUid(id: string): Promise<{ uid: number; gid: number }> {
    const held = new Set<number>();
    for (const name of await readdir(sandboxesDir(dataDir)).catch(() => [] as string[])) {
      const record = name === id ? null : await readRecord(sandboxDir(dataDir, name));
      if (record) held.add(record.uid);
    }
    return uids.allocate(held, await processUids());
  }

  async function inspect(id: SandboxId): Promise<SandboxInfo | null> {
    if (!isSandboxId(id)) return null;
    const record = await readRecord(sandboxDir(dataDir, id));
    if (!record) return null;
    // Running while the agent runs: bwrap's init reaps until no child is left, so a desktop whose
    // agent died would run on unsupervised, with nobody answering /health or restarting it.
    const isInitRunning = await isRunning(record.init);
    const isAgentRunning = isInitRunning && (record.agent === undefined || (await isRunning(record.agent)));
    // The outer bwrap exits with its command's status, i.e. the agent's: just after the agent,
    // so a look in between waits a moment for it rather than report an exit without its cause.
    if (!isAgentRunning && !exits.has(id)) await reaped(children.get(id), exitReportMs);
    const how = exits.get(id) ?? null;
    const cgroup = await (await cgroups).open(id).catch(() => null);
    const limit = cgroup ? describeLimitsHit(await cgroup.limitsHit(), cgroup.limits) : null;
    return {
      id,
      ...endpointsOf(sandboxDir(dataDir, id), record.uid),
      status: isAgentRunning ? 'running' : 'exited',
      startedAt: record.startedAt,
      exit: isAgentRunning ? null : isInitRunning ? `agent exited${how ? `: ${how}` : ''}` : how,
      limitReached: limit,
    };
  }

  async function list(): Promise<SandboxInfo[]> {
    const names = await readdir(sandboxesDir(dataDir)).catch(() => [] as string[]);
    const infos = await Promise.all(names.filter(isSandboxId).map((id) => inspect(id)));
    return infos.filter((info): info is SandboxInfo => info !== null).sort((a, b) => a.startedAt.localeCompare(b.startedAt));
  }

  async function destroy(id: SandboxId, options: { now?: boolean } = {}): Promise<void> {
    if (!isSandboxId(id)) return;
    const dir = sandboxDir(dataDir, id);
    const record = await readRecord(dir);
    await stopSandbox(id, record?.init ?? null, record?.agent, options.now ? 0 : agentStopGraceMs);
    await reaped(children.get(id));
    // Idempotent like the rest: a destroy running beside this one may have removed it already.
    const cgroup = await (await cgroups).open(id).catch((error: unknown) => {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ENODEV') return null;
      throw error;
    });
    await cgroup?.remove();
    // sandbox.json goes last: while anything of the sandbox is on disk, list() still reports it.
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      if (name !== recordFile) await rm(join(dir, name), { recursive: true, force: true });
    }
    await rm(dir, { recursive: true, force: true });
    children.delete(id);
    exits.delete(id);
    logger?.info({ sandboxId: id }, 'sandbox destroyed');
  }

  async function close(): Promise<void> {
    await saidCgroups;
    // Sandboxes live on; only stop holding their bwrap processes.
    for (const child of children.values()) {
      child.unref();
      for (const stream of child.stdio) stream?.destroy();
    }
    children.clear();
  }

  return { name: 'local', create, destroy, inspect, list, close };
}

/** Waits (briefly) until this process has reaped a bwrap it started, so no zombie of ours outlives destroy(). */
async function reaped(child: ChildProcess | undefined, waitMs = 2_000): Promise<void> {
  if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return;
  await Promise.race([new Promise((resolve) => child.once('exit', resolve)), sleep(waitMs)]);
}

/** That very process, while it runs: not recycled, not a zombie, not on its way out. */
async function liveProcess(ref: ProcessRef): Promise<ProcStat | null> {
  const proc = await readProcStat(ref.pid);
  // An init that was killed stays in its exit path (not yet a zombie) until the kernel has ended
  // the rest of its namespace: PF_EXITING tells that apart from an init that runs.
  return proc !== null && proc.state !== 'Z' && proc.startTime === ref.startTime && (proc.flags & processExitingFlag) === 0 ? proc : null;
}

async function isRunning(ref: ProcessRef): Promise<boolean> {
  return (await liveProcess(ref)) !== null;
}

/** The agent of a sandbox just started: the init forks it once the sandbox is set up. */
async function waitForAgent(init: InitRef, signal: AbortSignal | undefined): Promise<ProcessRef> {
  const deadline = Date.now() + infoTimeoutMs;
  for (;;) {
    signal?.throwIfAborted();
    const agent = await agentOf(init);
    if (agent) return { pid: agent.pid, startTime: agent.startTime };
    if (!(await isRunning(init))) throw new Error(`the sandbox's init (pid ${init.pid}) exited before it started the agent`);
    if (Date.now() > deadline) throw new Error(`the sandbox's init (pid ${init.pid}) started no agent within ${infoTimeoutMs} ms`);
    await sleep(20);
  }
}

/**
 * Stops every process of a sandbox: TERM to the agent's process group (it stops the desktop) and
 * up to `graceMs` for it to go (none with 0), then KILL to the pid-namespace init, which makes the
 * kernel kill everything in the namespace.
 * Returns once no process of the sandbox remains. Idempotent.
 */
async function stopSandbox(id: string, init: InitRef | null, agentRef?: ProcessRef, graceMs = agentStopGraceMs): Promise<void> {
  if (init && (await isRunning(init)) && graceMs > 0) {
    // The recorded agent (gone already when it was killed: then straight to the init), or for a
    // record without one, the init's child.
    const agent = agentRef ? await liveProcess(agentRef) : await agentOf(init);
    if (agent) {
      signal(-agent.pgid, 'SIGTERM');
      const deadline = Date.now() + graceMs;
      while (Date.now() < deadline && (await readProcStat(agent.pid))?.startTime === agent.startTime) await sleep(50);
    }
  }
  // Checked right before the kill: never signal a recycled pid.
  if (init && (await isRunning(init))) signal(init.pid, 'SIGKILL');
  const started = Date.now();
  for (;;) {
    const left = await sandboxProcesses(id, init?.pidNamespace ?? null);
    if (left.length === 0) return;
    if (Date.now() - started > teardownTimeoutMs) throw new Error(`sandbox ${id}: processes ${left.join(', ')} survive SIGKILL`);
    // The kernel's teardown of the namespace takes a moment; what still stands after that (or
    // what only the env marker finds: a start interrupted before its record was written) is
    // killed one by one.
    if (!init || Date.now() - started > 500) for (const pid of left) signal(pid, 'SIGKILL');
    await sleep(50);
  }
}

/** The agent: the child of the namespace's init (the first one; orphans of the desktop are reparented to it too). */
async function agentOf(init: InitRef): Promise<ProcStat | null> {
  return (await childrenOf(init.pid)).find((p) => p.state !== 'Z') ?? null;
}

/**
 * Live processes of a sandbox: those in its pid namespace or carrying its id in their environment,
 * and all their descendants (Chromium's zygotes and renderers run in nested pid namespaces of
 * their own). Zombies are left out: they hold nothing but a pid, and their parents reap them.
 */
export async function sandboxProcesses(id: string, pidNamespace: number | null): Promise<number[]> {
  const all = await scanProcesses({ name: sandboxIdEnv, value: id });
  const hostNamespace = await pidNamespaceOf('self');
  const namespaces = new Set<number>(pidNamespace === null ? [] : [pidNamespace]);
  for (const p of all) if (p.hasEnv && p.pidNamespace !== null && p.pidNamespace !== hostNamespace) namespaces.add(p.pidNamespace);
  const marked = all.filter((p) => p.hasEnv || (p.pidNamespace !== null && namespaces.has(p.pidNamespace))).map((p) => p.pid);
  const found = withDescendants(marked, all);
  return all.filter((p) => found.has(p.pid) && p.state !== 'Z').map((p) => p.pid);
}

/**
 * What is left of a sandbox, as readable lines: its processes, its directory, its sockets. Empty
 * after a successful destroy. For the conformance suite and the tests' global leak check.
 */
export async function sandboxLeftovers(dataDir: string, id: SandboxId): Promise<string[]> {
  const dir = sandboxDir(dataDir, id);
  const record = await readRecord(dir);
  return leftoversIn(dir, await sandboxProcesses(id, record?.init.pidNamespace ?? null));
}

function readBwrapInfo(child: ChildProcess): Promise<{ childPid: number; pidNamespace: number }> {
  return new Promise((resolvePromise, reject) => {
    const stream = child.stdio[bwrapFds.info] as Readable;
    let text = '';
    const timer = setTimeout(() => fail(new Error(`bwrap did not report its sandbox within ${infoTimeoutMs} ms`)), infoTimeoutMs);
    const fail = (error: Error): void => {
      clearTimeout(timer);
      stream.destroy();
      reject(error);
    };
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      text += chunk;
      try {
        const info = JSON.parse(text) as Record<string, unknown>;
        if (typeof info['child-pid'] !== 'number' || typeof info['pid-namespace'] !== 'number') throw new Error('incomplete');
        clearTimeout(timer);
        stream.destroy();
        resolvePromise({ childPid: info['child-pid'], pidNamespace: info['pid-namespace'] });
      } catch {
        // Not all of it yet.
      }
    });
    stream.on('error', () => {}); // ECONNRESET when bwrap dies: 'close' follows
    stream.on('close', () => fail(new Error('bwrap exited before reporting its sandbox (see logs/agent.log)')));
    child.once('error', (error) => fail(new Error(`bwrap could not be started: ${error.message}`, { cause: error })));
  });
}

/** bwrap exits with its init's status; an init killed by a signal shows as 128 + the signal. */
function describeBwrapExit(code: number | null, sig: NodeJS.Signals | null): string {
  if (sig) return `signal ${sig}`;
  if (code !== null && code > 128) {
    const name = Object.entries(osConstants.signals).find(([, n]) => n === code - 128)?.[0];
    if (name) return `signal ${name}`;
  }
  return `exit ${code ?? '?'}`;
}

function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  signal.throwIfAborted();
  return new Promise((resolvePromise, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolvePromise(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // ESRCH: already gone.
  }
}

/** Lets a bwrap that waits on its block fd go on. */
function unblock(child: ChildProcess): void {
  const stream = (child.stdio as unknown as Array<Writable | null>)[bwrapFds.block];
  stream?.on('error', () => {}); // EPIPE when bwrap died first: its exit says why
  stream?.end('1');
}
