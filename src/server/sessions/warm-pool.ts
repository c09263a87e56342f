import { cpus } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { Driver, SandboxHandle, SandboxInfo, SandboxSpec } from '../../drivers/driver.js';
import { timeoutSignal } from '../../drivers/timeout-signal.js';
import { backoffDelayMs } from '../../protocol/backoff.js';
import { AppError } from '../../protocol/errors.js';
import { newSandboxId, type SandboxId, type SessionId } from '../../protocol/ids.js';
import { liveStates } from '../../protocol/session.js';
import type { Store } from '../../store/store.js';
import type { Metrics } from '../metrics.js';
import { unusedDesktopProblem } from './desktop-check.js';

export interface WarmPoolOptions {
  store: Store;
  /** The node whose desktops these are: its marks, its live sessions. */
  nodeId: string;
  driver: Driver;
  metrics: Metrics;
  /** The session layer's logger. */
  log: Logger;
  /** The desktop every sandbox gets (the sessions' own). */
  desktop: Omit<SandboxSpec, 'id'>;
  /** Desktops to keep ready (PORTHOLE_WARM_POOL); 0 keeps none. */
  size: number;
  /** A ready desktop older than this is replaced. */
  maxAgeMs: number;
  /** Live sessions and pooled desktops together stay within this (PORTHOLE_MAX_SESSIONS). */
  maxSessions: number;
  /** How long one desktop may take to start and answer (the boot's deadline). */
  startTimeoutMs: number;
  /** Whether a session is starting now: the pool starts nothing while one is. */
  isBusy(): boolean;
}

interface Ready {
  readonly handle: SandboxHandle;
  /** Epoch ms. */
  readonly createdAt: number;
}

/** One look at a desktop must not hold a take for long: a desktop that does not answer at once is not handed out. */
const checkTimeoutMs = 2_000;
const probeIntervalMs = 100;
/** How often a refill that yielded to a starting session looks again. */
const busyRetryMs = 250;
/** After a session started, its CLI and sign-in page are loading: a refill waits at least this long before it competes for the CPU. */
const settleMs = 2_000;
/** Over this share of all cores busy, the host is busy: a refill waits for it to calm down... */
const busyShare = 0.6;
/** ...but not for longer than this, or a host that is always busy would never have a pool. */
const maxYieldMs = 20_000;
/** How long the CPU is watched to judge it. */
const cpuSampleMs = 250;
/** Between refills that failed in a row. */
const failureBackoff = { firstMs: 1_000, maxMs: 60_000 };

/**
 * Desktops started ahead (Xvnc, window manager, terminal, Chromium on the start page) with no
 * session, provider, user or secret inside, so that a new session skips the sandbox's start. The
 * store's pool marks (`pool_sandboxes`) say which sandboxes never served anyone: taking one removes
 * its mark in the statement that gives its id to the session, so none is handed out twice, and a
 * sandbox without a mark is never pooled again. A desktop is checked (agent healthy, of this
 * version, no login started; VNC greets) before it is handed out; one that fails is destroyed.
 *
 * The pool refills one desktop at a time, in the background, only while no session is starting,
 * at least 2 s after one started (its CLI and page are loading) and while the CPU is calm (or
 * after 20 s of yielding), and keeps live sessions plus pooled desktops within
 * PORTHOLE_MAX_SESSIONS. The reconciler calls reconcile() each pass: ready desktops are checked
 * (which renews their lease), recycled when too old, and after a restart the marked ones that
 * still answer are adopted. Shutdown stops starts in flight and leaves ready desktops running for
 * the next server, as it does sessions' sandboxes.
 */
/** The share of all cores busy during the next `ms` (0 to 1), from the kernel's CPU times. */
async function cpuBusyShare(ms: number): Promise<number> {
  const totals = () => {
    let busy = 0;
    let all = 0;
    for (const { times } of cpus()) {
      const sum = times.user + times.nice + times.sys + times.idle + times.irq;
      busy += sum - times.idle;
      all += sum;
    }
    return { busy, all };
  };
  const before = totals();
  await sleep(ms);
  const after = totals();
  return (after.busy - before.busy) / Math.max(1, after.all - before.all);
}

export class WarmPool {
  readonly #o: WarmPoolOptions;
  /** Checked and ready, oldest first (a Map keeps insertion order). */
  readonly #ready = new Map<SandboxId, Ready>();
  /** Being started: what a take may wait for, and how to stop it. */
  readonly #starting = new Map<SandboxId, { controller: AbortController; done: Promise<void> }>();
  /**
   * Handed out, with when: until a reconcile pass that began after the take (whose list of
   * sessions shows the session's sandbox id), the reconciler must not take it for an orphan.
   */
  readonly #handedOut = new Map<SandboxId, number>();
  #refill: Promise<void> | null = null;
  #isRefillWanted = false;
  #retryTimer: NodeJS.Timeout | null = null;
  #quietUntil = 0;
  /** Since when a wanted refill has been yielding to a busy host (null: not yielding). */
  #yieldingSince: number | null = null;
  #failuresInARow = 0;
  #isClosed = false;

  constructor(options: WarmPoolOptions) {
    this.#o = options;
  }

  /** Desktops ready to hand out now. */
  get readyCount(): number {
    return this.#ready.size;
  }

  /** Desktops being started now. */
  get startingCount(): number {
    return this.#starting.size;
  }

  /** Resolves once no refill runs (one may be scheduled): for tests and the bench. */
  async idle(): Promise<void> {
    while (this.#refill) await this.#refill;
  }

  /** Whether a sandbox is the pool's (ready, starting, or just handed out): the reconciler leaves it alone. */
  owns(id: string): boolean {
    const sandboxId = id as SandboxId;
    return this.#ready.has(sandboxId) || this.#starting.has(sandboxId) || this.#handedOut.has(sandboxId);
  }

  /** Starts filling the pool (after the start-up reconcile has adopted what was already running). */
  start(): void {
    this.#kick();
  }

  /**
   * A desktop for `sessionId`, or null (a miss: the session starts its own). Takes the oldest ready
   * desktop that still answers as never used, else waits for one being started; the store gives
   * its id to the session as it takes its mark. A desktop that fails the check is destroyed.
   */
  async take(sessionId: SessionId, signal: AbortSignal): Promise<SandboxHandle | null> {
    for (;;) {
      signal.throwIfAborted();
      const next = this.#ready.entries().next();
      if (next.done) {
        const starting = this.#starting.values().next();
        if (!starting.done) {
          await Promise.race([starting.value.done, new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }))]);
          continue;
        }
        this.#o.metrics.warmPoolTakes.inc({ outcome: 'miss' });
        this.#kick();
        return null;
      }
      const [id, ready] = next.value;
      this.#ready.delete(id);
      this.#handedOut.set(id, Date.now());
      this.#updateGauge();
      const problem = await unusedDesktopProblem(ready.handle, { signal, timeoutMs: checkTimeoutMs });
      if (signal.aborted) {
        // The session ended while its desktop was checked: the desktop is as unused as it was.
        this.#putBack(id, ready);
        throw signal.reason;
      }
      if (problem) {
        this.#handedOut.delete(id);
        await this.#discard(id, 'failed_check', problem);
        continue;
      }
      const session = await this.#o.store.takePooledSandbox(sessionId, id).catch((error: unknown) => {
        this.#putBack(id, ready);
        throw error;
      });
      if (!session) {
        // The session is no longer live (its mark was left alone), or the mark is gone.
        const isStillMarked = (await this.#o.store.listPooledSandboxes(this.#o.nodeId)).some((p) => p.sandboxId === id);
        if (isStillMarked) this.#putBack(id, ready);
        else {
          this.#handedOut.delete(id);
          await this.#discard(id, 'gone', 'its pool mark is gone');
        }
        signal.throwIfAborted();
        throw new AppError('SESSION_STATE_CONFLICT', { details: { sessionId } });
      }
      this.#o.metrics.warmPoolTakes.inc({ outcome: 'hit' });
      this.#o.log.info({ sessionId, sandboxId: id, ageMs: Date.now() - ready.createdAt }, 'warm pool: desktop handed out');
      this.#kick();
      return ready.handle;
    }
  }

  /** Room freed or taken (a session ended): the pool may refill. */
  changed(): void {
    this.#kick();
  }

  /** A session finished starting: its CLI and sign-in page load now, so a refill waits a moment, then for a calm CPU. */
  sessionStarted(): void {
    this.#quietUntil = Date.now() + settleMs;
    this.#kick();
  }

  /**
   * The reconciler's part, each pass, given the sandboxes no live session owns and when the pass
   * began: checks ready desktops (renewing their lease), recycles old ones, adopts marked desktops
   * new to this process, drops marks whose sandbox is gone. Returns the ids it keeps; the
   * reconciler destroys the rest.
   */
  async reconcile(unowned: readonly SandboxInfo[], passStartedAt: number): Promise<Set<string>> {
    for (const [id, at] of this.#handedOut) if (at < passStartedAt) this.#handedOut.delete(id);
    const marks = new Map((await this.#o.store.listPooledSandboxes(this.#o.nodeId)).map((mark) => [mark.sandboxId as string, mark]));
    const byId = new Map(unowned.map((sandbox) => [sandbox.id as string, sandbox]));
    const now = Date.now();
    for (const [id, ready] of [...this.#ready]) {
      const sandbox = byId.get(id);
      if (sandbox?.status !== 'running' || sandbox.limitReached) await this.#discardIfReady(id, ready, 'gone', sandbox ? `it ${sandbox.status}` : 'it is gone');
      else if (now - ready.createdAt > this.#o.maxAgeMs) await this.#discardIfReady(id, ready, 'recycled', `older than ${this.#o.maxAgeMs} ms`);
      else {
        const problem = await unusedDesktopProblem(ready.handle, { timeoutMs: checkTimeoutMs });
        if (problem) await this.#discardIfReady(id, ready, 'failed_check', problem);
      }
    }
    const kept = new Set<string>();
    for (const sandbox of unowned) {
      if (this.owns(sandbox.id)) {
        kept.add(sandbox.id);
        continue;
      }
      const mark = marks.get(sandbox.id);
      if (!mark) continue;
      // Marked but new to this process: a desktop the last server started. Kept only while the pool wants it and it answers unused.
      const createdAt = Date.parse(mark.createdAt);
      const hasRoom = this.#ready.size + this.#starting.size < this.#o.size && !this.#isClosed;
      const problem =
        sandbox.status !== 'running'
          ? `it ${sandbox.status}`
          : now - createdAt > this.#o.maxAgeMs
            ? 'it is older than the pool keeps'
            : !hasRoom
              ? 'the pool is full'
              : await unusedDesktopProblem(sandbox, { timeoutMs: checkTimeoutMs });
      if (problem === null) {
        this.#ready.set(sandbox.id, { handle: sandbox, createdAt });
        this.#o.log.info({ sandboxId: sandbox.id }, 'warm pool: adopted a desktop the last server started');
        this.#o.metrics.reconcilerActions.inc({ action: 'adopted' });
        kept.add(sandbox.id);
        continue;
      }
      this.#o.log.info({ sandboxId: sandbox.id, why: problem }, 'warm pool: not adopting a pooled desktop');
      await this.#o.store.removePooledSandbox(sandbox.id);
    }
    for (const id of marks.keys()) {
      if (!byId.has(id) && !this.owns(id)) await this.#o.store.removePooledSandbox(id as SandboxId);
    }
    this.#updateGauge();
    this.#kick();
    return kept;
  }

  /** Stops starts in flight and refills; ready desktops stay running for the next server. Idempotent. */
  async close(): Promise<void> {
    this.#isClosed = true;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    for (const { controller } of this.#starting.values()) controller.abort(new AppError('SERVER_SHUTTING_DOWN'));
    await this.#refill;
  }

  // ---- internals ----

  #kick(): void {
    if (this.#isClosed || this.#o.size === 0) return;
    if (this.#refill) {
      this.#isRefillWanted = true;
      return;
    }
    this.#refill = this.#refillLoop()
      .catch((error: unknown) => this.#o.log.warn({ err: error }, 'warm pool: refill failed'))
      .finally(() => {
        this.#refill = null;
        if (this.#isRefillWanted) {
          this.#isRefillWanted = false;
          this.#kick();
        }
      });
  }

  #kickIn(ms: number): void {
    if (this.#retryTimer || this.#isClosed) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      this.#kick();
    }, ms).unref();
  }

  async #refillLoop(): Promise<void> {
    while (!this.#isClosed) {
      const live = (await this.#o.store.listSessions({ states: liveStates, nodeId: this.#o.nodeId })).length;
      const pooled = this.#ready.size + this.#starting.size;
      if (pooled >= Math.min(this.#o.size, this.#o.maxSessions - live)) return;
      const quietIn = this.#quietUntil - Date.now();
      if (this.#o.isBusy() || quietIn > 0) {
        this.#kickIn(Math.max(quietIn, busyRetryMs));
        return;
      }
      // A desktop's start takes both cores of a small host for a second or more: not while others need them.
      this.#yieldingSince ??= Date.now();
      const share = await cpuBusyShare(cpuSampleMs);
      if (share > busyShare && Date.now() - this.#yieldingSince < maxYieldMs) {
        this.#kickIn(busyRetryMs);
        return;
      }
      this.#yieldingSince = null;
      if (!(await this.#startOne())) {
        this.#kickIn(backoffDelayMs(failureBackoff, this.#failuresInARow - 1));
        return;
      }
    }
  }

  /** Starts one desktop and waits until it answers; true when it joined the pool. */
  async #startOne(): Promise<boolean> {
    const id = newSandboxId();
    const controller = new AbortController();
    let settle = (): void => {};
    this.#starting.set(id, { controller, done: new Promise<void>((resolve) => (settle = resolve)) });
    const started = performance.now();
    try {
      // The mark first: a server that stops half-way leaves a marked sandbox, which the next one checks.
      await this.#o.store.addPooledSandbox(id, this.#o.nodeId);
      const signal = AbortSignal.any([controller.signal, timeoutSignal(this.#o.startTimeoutMs)]);
      const handle = await this.#o.driver.create({ id, ...this.#o.desktop }, { signal });
      for (;;) {
        const problem = await unusedDesktopProblem(handle, { signal, timeoutMs: checkTimeoutMs });
        if (problem === null) break;
        signal.throwIfAborted();
        await sleep(probeIntervalMs, undefined, { signal });
      }
      const ms = Math.round(performance.now() - started);
      this.#ready.set(id, { handle, createdAt: Date.now() });
      this.#failuresInARow = 0;
      this.#o.metrics.warmPoolRefillSeconds.observe({ outcome: 'ok' }, ms / 1000);
      this.#o.log.info({ sandboxId: id, ms }, 'warm pool: desktop ready');
      return true;
    } catch (error) {
      this.#failuresInARow++;
      this.#o.metrics.warmPoolRefillSeconds.observe({ outcome: 'failed' }, (performance.now() - started) / 1000);
      if (!this.#isClosed) this.#o.log.warn({ err: error, sandboxId: id }, 'warm pool: a desktop did not start');
      await this.#discard(id, 'start_failed', error instanceof Error ? error.message : String(error));
      return false;
    } finally {
      this.#starting.delete(id);
      this.#updateGauge();
      settle();
    }
  }

  #putBack(id: SandboxId, ready: Ready): void {
    this.#handedOut.delete(id);
    this.#ready.set(id, ready);
    this.#updateGauge();
  }

  async #discardIfReady(id: SandboxId, ready: Ready, reason: string, why: string): Promise<void> {
    // A take may have had it meanwhile.
    if (this.#ready.get(id) === ready) await this.#discard(id, reason, why);
  }

  /** Forgets a desktop (its mark first, so it can never be handed out) and destroys it. */
  async #discard(id: SandboxId, reason: string, why: string): Promise<void> {
    this.#ready.delete(id);
    this.#updateGauge();
    this.#o.log.info({ sandboxId: id, reason, why }, 'warm pool: desktop discarded');
    this.#o.metrics.warmPoolDiscards.inc({ reason });
    await this.#o.store.removePooledSandbox(id).catch((error: unknown) => this.#o.log.warn({ err: error, sandboxId: id }, 'warm pool: could not drop a mark'));
    await this.#o.driver.destroy(id).catch((error: unknown) => this.#o.log.error({ err: error, sandboxId: id }, 'warm pool: could not destroy a desktop'));
  }

  #updateGauge(): void {
    this.#o.metrics.warmPoolReady.set(this.#ready.size);
  }
}
