import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { z } from 'zod';
import { isSandboxId, type SandboxId } from '../../protocol/ids.js';
import { version } from '../../protocol/version.js';
import { describeLimitsHit, detectCgroups, noCgroups, type CgroupHost, type SandboxLimits } from '../cgroups/cgroups.js';
import type { Driver, SandboxHandle, SandboxInfo, SandboxSpec } from '../driver.js';
import { longestSocketPath, maxUnixPathBytes, sandboxDir, sandboxesDir, sandboxPaths } from '../local-layout.js';
import { CleanupStack } from '../cleanup-stack.js';
import { pinTempSuffixBytes } from '../pinned-socket.js';
import { processUids, readProcStat } from '../proc-scan.js';
import { endpointsOf, leftoversIn, makeSandboxDirs, startFailed, tailOf, UidPool, writeAgentConfig } from '../sandbox-dir.js';
import { writeBundle } from './oci-spec.js';
import { killRunscProcesses, Runsc, runscProcesses, type GvisorPlatform, type RunscState } from './runsc.js';

// The `gvisor` driver: each sandbox is a gVisor sandbox, started with `runsc create` + `runsc
// start` from an OCI bundle porthole writes (oci-spec.ts). The person's processes — the agent, the
// desktop, the CLI — run on gVisor's user-space kernel (the Sentry), not the host's: a system call
// reaches the host only as the Sentry's own, few and filtered by seccomp. Same directory layout,
// agent, sockets, pinning, egress and cgroups as the local driver (local-layout.ts, sandbox-dir.ts);
// what differs is what runs the processes.
//
// State is sandbox.json plus runsc's own state (`--root <data>/runsc`), so a restarted server
// inspects, lists and destroys the sandboxes an earlier process started; they are daemons of their
// own (parent: init), never children of the server.

export interface GvisorDriverOptions {
  readonly dataDir: string;
  /** Host uids, one per sandbox: the uid the sandbox's person has inside gVisor and outside. */
  readonly sandboxUids: { readonly first: number; readonly last: number };
  readonly homeMiB?: number;
  readonly limits?: SandboxLimits;
  readonly cgroups?: Promise<CgroupHost>;
  /** Absolute path of dist/agent/porthole-agent.mjs. */
  readonly agentBundle: string;
  readonly clis?: string;
  readonly demoCli?: string;
  /** ptrace works everywhere; kvm needs a /dev/kvm that gVisor's KVM platform runs on. */
  readonly platform?: GvisorPlatform;
  readonly runsc?: string;
  readonly logger?: Logger;
}

const recordSchema = z.object({
  driver: z.literal('gvisor'),
  id: z.string(),
  startedAt: z.string(),
  uid: z.number().int(),
  platform: z.string(),
  /** The Sentry's host process (pid and /proc start time, against pid reuse). */
  sentry: z.object({ pid: z.number().int(), startTime: z.number().int() }),
  createdBy: z.string(),
});
type GvisorRecord = z.infer<typeof recordSchema>;
const recordFile = 'sandbox.json';

async function readRecord(dir: string): Promise<GvisorRecord | null> {
  const text = await readFile(join(dir, recordFile), 'utf8').catch(() => null);
  if (text === null) return null;
  const parsed = recordSchema.safeParse(JSON.parse(text));
  return parsed.success ? parsed.data : null;
}

async function writeRecord(dir: string, record: GvisorRecord): Promise<void> {
  const temp = join(dir, `.${recordFile}.${randomBytes(4).toString('hex')}`);
  await writeFile(temp, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o644 });
  await rename(temp, join(dir, recordFile));
}

const startTimeoutMs = 15_000;
/**
 * Host tasks per task of the sandbox's: on the ptrace platform every thread of the person's runs
 * as a thread of a stub process on the host, traced by a thread of the Sentry, beside the Sentry's
 * own Go runtime. Measured here: an idle desktop is 900–1,030 host tasks and peaks at 1,400 during
 * a sign-in (the same desktop under the local driver fits in 512). So the cgroup's pids limit is
 * PORTHOLE_SANDBOX_PIDS times this (4,096 by default): still a bound on a fork bomb, in the host's
 * units, with room for a heavier sign-in page than the demo's.
 */
const hostTasksPerTask = 8;
/** The agent stops its children with TERM, then KILL after 2 s. */
const agentStopGraceMs = 2_500;
const teardownTimeoutMs = 10_000;

export function createGvisorDriver(options: GvisorDriverOptions): Driver {
  const dataDir = resolve(options.dataDir);
  const logger = options.logger?.child({ component: 'gvisor-driver' });
  const homeMiB = options.homeMiB ?? 256;
  const platform = options.platform ?? 'ptrace';
  const limits = options.limits ? { ...options.limits, pids: options.limits.pids * hostTasksPerTask } : undefined;
  const cgroups = limits ? (options.cgroups ?? detectCgroups()) : Promise.resolve(noCgroups('no limits configured'));
  const runscRoot = join(dataDir, 'runsc');
  const runsc = new Runsc({ root: runscRoot, platform, ...(options.runsc ? { binary: options.runsc } : {}) });
  const uids = new UidPool(options.sandboxUids, startTimeoutMs * 2);
  const bundleOf = (id: string): string => join(sandboxDir(dataDir, id), 'bundle');

  async function create(spec: SandboxSpec, createOptions: { signal?: AbortSignal } = {}): Promise<SandboxHandle> {
    const { signal } = createOptions;
    const dir = sandboxDir(dataDir, spec.id);
    const paths = sandboxPaths(dir);
    const bundle = bundleOf(spec.id);
    const cleanup = new CleanupStack();
    let step = 'prepare';
    let hasCreated = false;
    try {
      signal?.throwIfAborted();
      if (!isSandboxId(spec.id)) throw new Error(`not a sandbox id: ${JSON.stringify(spec.id)}`);
      const longest = longestSocketPath(dataDir, spec.id);
      if (!longest.fits)
        throw new Error(`socket path ${longest.path} is longer than ${maxUnixPathBytes - pinTempSuffixBytes} bytes: choose a shorter data directory`);

      step = 'directories';
      await mkdir(sandboxesDir(dataDir), { recursive: true, mode: 0o700 });
      await mkdir(runscRoot, { recursive: true, mode: 0o700 });
      await mkdir(dir, { mode: 0o700 }); // EEXIST: a second create with the same id fails here
      cleanup.push('directory', () => rm(dir, { recursive: true, force: true }));
      await stat(options.agentBundle).catch((cause: unknown) => {
        throw new Error(`agent bundle ${options.agentBundle} is missing (run node scripts/build.mjs)`, { cause });
      });
      step = 'uid';
      const { uid, gid } = await allocateUid(spec.id);
      step = 'cgroup';
      const cgroup = limits ? await (await cgroups).create(spec.id, limits) : null;
      if (cgroup) cleanup.push('cgroup', () => cgroup.remove());
      await makeSandboxDirs(dir, { uid, gid });
      await writeAgentConfig(dir, spec);
      step = 'bundle';
      await mkdir(bundle, { mode: 0o711 });
      await writeBundle(bundle, {
        sandboxId: spec.id,
        uid,
        sources: { run: paths.run, host: paths.host, agentBundle: options.agentBundle, clis: options.clis, demoCli: options.demoCli },
        homeMiB,
        tmpMiB: homeMiB,
      });
      signal?.throwIfAborted();

      step = 'runsc create';
      hasCreated = true;
      cleanup.push('sandbox', () => stopSandbox(spec.id));
      const startedAt = new Date().toISOString();
      const sentryPid = await runsc.create(spec.id, bundle, join(dir, 'sentry.pid'), paths.agentLog, signal);
      const sentry = await readProcStat(sentryPid);
      if (!sentry) throw new Error(`gVisor's sandbox process (pid ${sentryPid}) exited at once; see ${paths.agentLog}`);

      // Created, not started: nothing of the person's runs yet. The Sentry, its gofer and the
      // ptrace stubs go into the sandbox's cgroup now; all the person's memory is the Sentry's.
      step = 'limits';
      if (cgroup) for (const pid of await runscProcesses(bundle)) await cgroup.add(pid).catch(() => undefined);

      step = 'runsc start';
      signal?.throwIfAborted();
      await runsc.start(spec.id);
      const state = await runsc.state(spec.id);
      if (state?.status !== 'running') throw new Error(`the sandbox is ${state?.status ?? 'gone'} right after start; see ${paths.agentLog}`);

      step = 'record';
      await writeRecord(dir, {
        driver: 'gvisor',
        id: spec.id,
        startedAt,
        uid,
        platform,
        sentry: { pid: sentryPid, startTime: sentry.startTime },
        createdBy: version,
      });
      signal?.throwIfAborted();
      cleanup.release();
      logger?.info({ sandboxId: spec.id, sentryPid, platform }, 'sandbox started');
      return { id: spec.id, ...endpointsOf(dir, uid) };
    } catch (error) {
      const log = hasCreated ? await tailOf(paths.agentLog) : null;
      const failedUndos = await cleanup.unwind();
      if (failedUndos.length > 0) logger?.error({ sandboxId: spec.id, failedUndos }, 'sandbox start: cleanup failed');
      throw startFailed(error, { sandboxId: spec.id, driver: 'gvisor', step }, log);
    }
  }

  async function allocateUid(id: string): Promise<{ uid: number; gid: number }> {
    const held = new Set<number>();
    for (const name of await readdir(sandboxesDir(dataDir)).catch(() => [] as string[])) {
      const record = name === id ? null : await readRecord(sandboxDir(dataDir, name));
      if (record) held.add(record.uid);
    }
    return uids.allocate(held, await processUids());
  }

  /**
   * TERM to the agent and up to `graceMs` for it to stop the desktop (none with 0), then runsc's
   * forced delete; returns once no host process of the sandbox is left.
   */
  async function stopSandbox(id: string, graceMs = agentStopGraceMs): Promise<void> {
    const state = graceMs > 0 ? await runsc.state(id).catch(() => null) : null;
    if (state?.status === 'running') {
      await runsc.kill(id, 'TERM').catch(() => undefined);
      const deadline = Date.now() + graceMs;
      while (Date.now() < deadline && (await runsc.state(id).catch(() => null))?.status === 'running') await sleep(100);
    }
    await runsc.deleteForce(id).catch((error: unknown) => logger?.warn({ sandboxId: id, err: error }, 'runsc delete failed; killing its processes'));
    await killRunscProcesses(bundleOf(id), teardownTimeoutMs).catch((error: unknown) => {
      throw new Error(`sandbox ${id}: ${(error as Error).message}`, { cause: error });
    });
  }

  async function inspect(id: SandboxId): Promise<SandboxInfo | null> {
    return describe(id, () => runsc.state(id));
  }

  /**
   * The sandbox as its record, runsc's `state` and /proc say. A runsc that fails (killed by a
   * signal meant for the server, say) throws rather than call the sandbox exited: the reconciler
   * would end a live session for it. runsc says "stopped" once the container's init — the agent —
   * has exited; the Sentry may still be there until delete.
   */
  async function describe(id: SandboxId, stateOf: () => Promise<RunscState | null>): Promise<SandboxInfo | null> {
    if (!isSandboxId(id)) return null;
    const dir = sandboxDir(dataDir, id);
    const record = await readRecord(dir);
    if (!record) return null;
    const state = await stateOf();
    const isRunning = state?.status === 'running';
    const sentry = await readProcStat(record.sentry.pid);
    const isSentryAlive = sentry !== null && sentry.state !== 'Z' && sentry.startTime === record.sentry.startTime;
    const cgroup = await (await cgroups).open(id).catch(() => null);
    const limit = cgroup ? describeLimitsHit(await cgroup.limitsHit(), cgroup.limits) : null;
    return {
      id,
      ...endpointsOf(dir, record.uid),
      status: isRunning && isSentryAlive ? 'running' : 'exited',
      startedAt: record.startedAt,
      exit: isRunning && isSentryAlive ? null : isSentryAlive ? 'agent exited' : `gVisor's sandbox process (pid ${record.sentry.pid}) is gone`,
      limitReached: limit,
    };
  }

  /** Every sandbox, with one `runsc list` for all of them (the reconciler asks on every tick). */
  async function list(): Promise<SandboxInfo[]> {
    const ids = (await readdir(sandboxesDir(dataDir)).catch(() => [] as string[])).filter(isSandboxId);
    if (ids.length === 0) return [];
    const states = new Map((await runsc.list()).map((state) => [state.id, state]));
    const infos = await Promise.all(ids.map((id) => describe(id, async () => states.get(id) ?? null)));
    return infos.filter((info): info is SandboxInfo => info !== null).sort((a, b) => a.startedAt.localeCompare(b.startedAt));
  }

  async function destroy(id: SandboxId, options: { now?: boolean } = {}): Promise<void> {
    if (!isSandboxId(id)) return;
    const dir = sandboxDir(dataDir, id);
    await stopSandbox(id, options.now ? 0 : agentStopGraceMs);
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
    logger?.info({ sandboxId: id }, 'sandbox destroyed');
  }

  return { name: 'gvisor', create, destroy, inspect, list, close: async () => {} };
}

/** What is left of a gVisor sandbox: host processes, runsc state, sockets, directory. Empty after destroy. */
export async function gvisorLeftovers(dataDir: string, id: SandboxId, runscBinary = 'runsc'): Promise<string[]> {
  const dir = sandboxDir(resolve(dataDir), id);
  const runsc = new Runsc({ root: join(resolve(dataDir), 'runsc'), platform: 'ptrace', binary: runscBinary });
  const container = (await runsc.state(id).catch(() => null)) ? [`runsc container ${id}`] : [];
  return [...container, ...(await leftoversIn(dir, await runscProcesses(join(dir, 'bundle'))))];
}
