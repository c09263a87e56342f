import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { Readable, Writable } from 'node:stream';
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import type { AgentProcessName } from '../protocol/agent.js';
import { backoffDelayMs, type Backoff } from '../protocol/backoff.js';

// One supervised child of the agent: started, restarted with a backoff when it exits, stopped as a
// process group (Chromium forks a tree of helpers; killing the group reaches all of them).

export interface ProcessSpec {
  readonly name: AgentProcessName;
  readonly command: string;
  readonly args: readonly string[];
  /** Runs before every start, e.g. waiting for the X display or removing a stale lock. */
  readonly beforeStart?: (signal: AbortSignal) => Promise<void>;
  /** Two more pipes, the child's fds 3 (it reads) and 4 (it writes), handed over at each start: Chromium's --remote-debugging-pipe. */
  readonly onPipes?: (pipes: { readonly toChild: Writable; readonly fromChild: Readable }) => void;
}

export interface ProcessState {
  readonly name: AgentProcessName;
  readonly pid: number | null;
  readonly running: boolean;
  readonly restarts: number;
  readonly lastExit: string | null;
}

/** 250 ms after the first crash in a row, doubling up to 8 s. */
const restartBackoff: Backoff = { firstMs: 250, maxMs: 8_000 };
/** A run this long counts as healthy: the next crash starts the backoff over. */
const stableRunMs = 10_000;
const stopGraceMs = 2_000;

export function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `signal ${signal}` : `exit ${code ?? '?'}`;
}

export class SupervisedProcess {
  readonly spec: ProcessSpec;
  private readonly logsDir: string;
  private readonly env: NodeJS.ProcessEnv;
  private readonly onEvent: (event: string, fields: Record<string, unknown>) => void;
  private child: ChildProcess | null = null;
  private isRunning = false;
  private restarts = 0;
  private lastExit: string | null = null;
  private retiredAs: string | null = null;
  private failuresInARow = 0;
  private restartTimer: NodeJS.Timeout | null = null;
  private readonly stopping = new AbortController();
  private exited: Promise<void> = Promise.resolve();

  constructor(spec: ProcessSpec, options: { logsDir: string; env: NodeJS.ProcessEnv; onEvent: (event: string, fields: Record<string, unknown>) => void }) {
    this.spec = spec;
    this.logsDir = options.logsDir;
    this.env = options.env;
    this.onEvent = options.onEvent;
  }

  state(): ProcessState {
    return { name: this.spec.name, pid: this.child?.pid ?? null, running: this.isRunning, restarts: this.restarts, lastExit: this.retiredAs ?? this.lastExit };
  }

  /** Retired on purpose (see retire()): not running, and not counted against the agent's health. */
  get isRetired(): boolean {
    return this.retiredAs !== null;
  }

  /** Stops it for good because something took its place; `why` shows as its last exit. */
  async retire(why: string): Promise<void> {
    this.retiredAs = why;
    this.onEvent('process.retired', { name: this.spec.name, why });
    await this.stop();
  }

  /** Starts the process (after `beforeStart`); never throws: a failed start is retried like an exit. */
  async start(): Promise<void> {
    const signal = this.stopping.signal;
    try {
      await this.spec.beforeStart?.(signal);
    } catch (error) {
      if (signal.aborted) return;
      this.onEvent('process.start_failed', { name: this.spec.name, error: String(error) });
      this.scheduleRestart(0);
      return;
    }
    if (signal.aborted) return;
    const startedAt = Date.now();
    let child: ChildProcess;
    try {
      const log = openSync(join(this.logsDir, `${this.spec.name}.log`), 'a');
      try {
        // detached: its own process group, so stop() can signal the whole tree it forks.
        const stdio: StdioOptions = this.spec.onPipes ? ['ignore', log, log, 'pipe', 'pipe'] : ['ignore', log, log];
        child = spawn(this.spec.command, this.spec.args, { stdio, env: this.env, detached: true, cwd: this.env.HOME ?? '/' });
      } finally {
        closeSync(log);
      }
    } catch (error) {
      this.onEvent('process.start_failed', { name: this.spec.name, error: String(error) });
      this.scheduleRestart(0);
      return;
    }
    this.child = child;
    this.exited = new Promise((resolve) => {
      let isSettled = false;
      const settle = (how: string): void => {
        if (isSettled) return;
        isSettled = true;
        this.onExited(child, how, startedAt);
        resolve();
      };
      // A failed spawn (ENOENT, EACCES) reports 'error', possibly with no 'exit'.
      child.once('error', (error: NodeJS.ErrnoException) => settle(`error ${error.code ?? error.message}`));
      child.once('exit', (code, sig) => settle(describeExit(code, sig)));
    });
    const [, , , toChild, fromChild] = child.stdio;
    if (this.spec.onPipes && toChild instanceof Writable && fromChild instanceof Readable) this.spec.onPipes({ toChild, fromChild });
    child.once('spawn', () => {
      this.isRunning = true;
      this.onEvent('process.started', { name: this.spec.name, pid: child.pid });
    });
  }

  private onExited(child: ChildProcess, how: string, startedAt: number): void {
    this.isRunning = false;
    this.lastExit = how;
    if (this.stopping.signal.aborted) return;
    this.onEvent('process.exited', { name: this.spec.name, pid: child.pid, exit: how });
    this.scheduleRestart(Date.now() - startedAt);
  }

  private scheduleRestart(ranMs: number): void {
    this.failuresInARow = ranMs >= stableRunMs ? 0 : this.failuresInARow + 1;
    const delayMs = backoffDelayMs(restartBackoff, this.failuresInARow - 1);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      this.restarts += 1;
      void this.start();
    }, delayMs);
  }

  /** TERM to the process group, KILL after a grace period. Idempotent. */
  async stop(): Promise<void> {
    this.stopping.abort();
    if (this.restartTimer) clearTimeout(this.restartTimer);
    if (this.child) await stopGroup(this.child, this.exited);
  }
}

/**
 * Stops a child started with `detached: true` and its whole process group: TERM, KILL after a
 * grace period, then KILL again for helpers that outlived their leader (Chromium's zygotes).
 * `exited` resolves when the child has exited. Returns at once for a child that is already gone.
 */
export async function stopGroup(child: ChildProcess, exited: Promise<unknown>): Promise<void> {
  const pid = child.pid;
  if (!pid || child.exitCode !== null || child.signalCode !== null) return;
  signalGroup(pid, 'SIGTERM');
  const grace = setTimeout(() => signalGroup(pid, 'SIGKILL'), stopGraceMs);
  await exited;
  clearTimeout(grace);
  signalGroup(pid, 'SIGKILL');
}

/** A signal to a process group; nothing when it is gone already. */
export function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: the group is already gone.
  }
}
