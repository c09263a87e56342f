import { execFile, spawn } from 'node:child_process';
import { closeSync, constants as fsConstants, openSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { z } from 'zod';
import { listPids, readProcStat, withDescendants } from '../proc-scan.js';

// runsc, gVisor's OCI runtime, as the gvisor driver calls it: one state directory of porthole's
// (`--root`, so `runsc list` shows porthole's sandboxes only, and a restarted server finds them),
// and the same global flags on every call (runsc records them in the container's state, but `kill`
// and `delete` must agree with `create` on --root).

const run = promisify(execFile);

/** gVisor's ways to intercept the sandbox's system calls. `kvm` needs a working /dev/kvm. */
export const gvisorPlatforms = ['ptrace', 'kvm'] as const;
export type GvisorPlatform = (typeof gvisorPlatforms)[number];

export interface RunscOptions {
  /** porthole's runsc state directory (0700). */
  readonly root: string;
  readonly platform: GvisorPlatform;
  /** The runsc binary; `runsc` on PATH by default. */
  readonly binary?: string;
}

const stateSchema = z.object({ id: z.string(), status: z.string(), pid: z.number().int() });
export type RunscState = z.infer<typeof stateSchema>;
const waitSchema = z.object({ exitStatus: z.number().int() });

const commandTimeoutMs = 15_000;

export class Runsc {
  readonly binary: string;

  constructor(private readonly options: RunscOptions) {
    this.binary = options.binary ?? 'runsc';
  }

  /**
   * Flags every call carries. --network=none: the sandbox has its own loopback and nothing else
   * (its way out is the egress proxy's unix socket, as for the local driver). --host-uds=all: the
   * sandbox may create and connect to host unix sockets, which it can only name inside its bind
   * mounts: run/ (its own, where Xvnc and the agent listen) and host/ (read-only: the proxy and the
   * agent channel). --ignore-cgroups: porthole puts the sandbox in its own cgroup (../cgroups).
   */
  globalArgs(): string[] {
    return [`--root=${this.options.root}`, `--platform=${this.options.platform}`, '--network=none', '--host-uds=all', '--ignore-cgroups'];
  }

  /**
   * `runsc create`: the sandbox (the Sentry, its user-space kernel) and its gofer start, the
   * container's process (the agent) does not yet: `start` runs it. The container's stdout and
   * stderr are `logFile`. Resolves with the Sentry's host pid.
   */
  async create(id: string, bundle: string, pidFile: string, logFile: string, signal?: AbortSignal): Promise<number> {
    const log = openSync(logFile, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_APPEND | fsConstants.O_NOFOLLOW, 0o644);
    try {
      // stdout and stderr are the log file, never a pipe of the server's: the Sentry inherits them
      // as the container's own (the agent's output), and a pipe nobody reads would block the agent.
      // runsc's own complaints land there too, which is where a failed start is explained.
      const child = spawn(this.binary, [...this.globalArgs(), 'create', `--bundle=${bundle}`, `--pid-file=${pidFile}`, id], {
        cwd: '/',
        env: { PATH: '/usr/bin:/bin:/usr/sbin:/sbin' },
        stdio: ['ignore', log, log],
        detached: true,
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), commandTimeoutMs);
      const onAbort = (): void => void child.kill('SIGKILL');
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        const [code, sig] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
          child.once('error', reject);
          child.once('exit', (c, s) => resolve([c, s]));
        });
        signal?.throwIfAborted();
        if (code !== 0)
          throw new Error(`runsc create ${sig ? `was killed (${sig}) after ${commandTimeoutMs} ms` : `exited ${code}`}; its output is in ${logFile}`);
      } finally {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      }
    } finally {
      closeSync(log);
    }
    const pid = Number((await readFile(pidFile, 'utf8')).trim());
    if (!Number.isInteger(pid) || pid <= 0) throw new Error(`runsc create wrote no sandbox pid to ${pidFile}`);
    return pid;
  }

  /** Runs the container's process. `signal` kills this runsc call (not the sandbox: see killRunscProcesses). */
  async start(id: string, signal?: AbortSignal): Promise<void> {
    await this.call(['start', id], signal);
  }

  /** Waits until the container's process exits; resolves with its wait status as runsc reports it. */
  async wait(id: string, signal?: AbortSignal): Promise<number> {
    const { stdout } = await this.call(['wait', id], signal);
    return waitSchema.parse(JSON.parse(stdout)).exitStatus;
  }

  /** The container's state; null when runsc knows no such container. */
  async state(id: string): Promise<RunscState | null> {
    try {
      const { stdout } = await this.call(['state', id]);
      return stateSchema.parse(JSON.parse(stdout));
    } catch (error) {
      if (/does not exist|not found|no such/i.test(String((error as { stderr?: string }).stderr ?? (error as Error).message))) return null;
      throw error;
    }
  }

  /** Every container under porthole's root. */
  async list(): Promise<RunscState[]> {
    const { stdout } = await this.call(['list', '--format=json']);
    const parsed: unknown = JSON.parse(stdout.trim() || '[]');
    return z.array(stateSchema).parse(parsed ?? []);
  }

  /** A signal to the container's init (the agent). */
  async kill(id: string, signalName: 'TERM' | 'KILL'): Promise<void> {
    await this.call(['kill', id, signalName]);
  }

  /** Stops whatever runs and removes the container's state. Idempotent. */
  async deleteForce(id: string): Promise<void> {
    try {
      await this.call(['delete', '--force', id]);
    } catch (error) {
      if (/does not exist|not found|no such/i.test(String((error as { stderr?: string }).stderr ?? ''))) return;
      throw error;
    }
  }

  private call(args: string[], signal?: AbortSignal): Promise<{ stdout: string; stderr: string }> {
    // Its own process group: a Ctrl+C meant for the server must not kill a `runsc state` under way.
    // (execFile hands its options to spawn, `detached` included, though its types leave it out.)
    const options = {
      encoding: 'utf8' as const,
      timeout: commandTimeoutMs,
      env: { PATH: '/usr/bin:/bin:/usr/sbin:/sbin' },
      detached: true,
      ...(signal ? { signal, killSignal: 'SIGKILL' as const } : {}),
    };
    return run(this.binary, [...this.globalArgs(), ...args], options);
  }
}

/**
 * Host processes of a sandbox: runsc's own (the Sentry, the gofer, a `runsc create` still under
 * way), which all carry its bundle directory on their command line, and their descendants (the
 * ptrace platform's stub processes). What destroy() waits for and the conformance suite checks.
 */
export async function runscProcesses(bundle: string): Promise<number[]> {
  const pids = await listPids();
  const entries = await Promise.all(
    pids.map(async (pid) => {
      const [stat, cmdline] = await Promise.all([readProcStat(pid), readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')]);
      return stat && stat.state !== 'Z' ? { pid, ppid: stat.ppid, args: cmdline.split('\0') } : null;
    }),
  );
  const live = entries.filter((e): e is NonNullable<typeof e> => e !== null);
  const marked = live.filter((e) => e.args.includes(bundle) || e.args.includes(`--bundle=${bundle}`)).map((e) => e.pid);
  return [...withDescendants(marked, live)];
}

/**
 * SIGKILL to every host process of the sandbox (runscProcesses) until none is left: what is left
 * after `runsc delete --force`, or a sandbox that no longer answers runsc at all (a Sentry spinning
 * on a platform that does not work here). Throws when some survive `timeoutMs`.
 */
export async function killRunscProcesses(bundle: string, timeoutMs: number): Promise<void> {
  const started = Date.now();
  for (;;) {
    const left = await runscProcesses(bundle);
    if (left.length === 0) return;
    if (Date.now() - started > timeoutMs) throw new Error(`processes ${left.join(', ')} of ${bundle} survive SIGKILL`);
    for (const pid of left) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone meanwhile.
      }
    }
    await sleep(50);
  }
}
