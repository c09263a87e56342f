import type { Logger } from 'pino';
import type { Driver, SandboxInfo } from '../../drivers/driver.js';
import { fetchAgentHealth } from '../../drivers/endpoint-probes.js';
import type { ErrorCode } from '../../protocol/errors.js';
import type { SandboxId, SessionId } from '../../protocol/ids.js';
import { liveStates, type EndReason, type Session } from '../../protocol/session.js';
import type { Store } from '../../store/store.js';
import type { Metrics } from '../metrics.js';
import type { SandboxHost } from './sandbox-host.js';
import type { SessionTimeouts } from './timeouts.js';
import type { StateChange } from './transition.js';
import type { ViewerRegistry } from './viewer-registry.js';
import type { WarmPool } from './warm-pool.js';
import type { LocalNode } from './local-node.js';

export interface ReconcilerOptions {
  store: Store;
  driver: Driver;
  viewers: ViewerRegistry;
  metrics: Metrics;
  /** The session layer's logger. */
  log: Logger;
  sandboxHost?: SandboxHost;
  /** The warm pool, which keeps the sandboxes it owns (warm-pool.ts). */
  pool?: WarmPool;
  timeouts: SessionTimeouts;
  intervalMs: number;
  /** Whether the session's boot is still under way (its own deadline covers it). */
  isBooting(id: SessionId): boolean;
  /** The node whose sessions and sandboxes these are: another node's sessions are not this one's to judge. */
  node: LocalNode;
  /** Sandboxes that are not a session's but this server's all the same (a run's): never destroyed here. */
  isOtherwiseOwned?(sandboxId: string): boolean;
  /** The session manager's doors: end, fail, and a live state change. */
  end(id: SessionId, reason: EndReason, detail: string): Promise<Session>;
  fail(id: SessionId, code: ErrorCode, detail: string, details: Record<string, unknown>): Promise<Session>;
  transition(id: SessionId, change: StateChange): Promise<Session>;
}

/** The detail of a session ended because its sandbox is not running: exited (and how) or gone. */
export function sandboxGoneDetail(session: Session, sandbox: SandboxInfo | null): string {
  if (sandbox) return `The sandbox ${sandbox.id} exited${sandbox.exit ? ` (${sandbox.exit})` : ''}.`;
  return session.state === 'starting' ? 'The server stopped while this session was starting.' : `The sandbox ${session.sandboxId ?? ''} is gone.`;
}

/**
 * Brings the store in line with what the driver runs, at start-up and then every `intervalMs`:
 * a live session whose sandbox is gone ends (`sandbox_exited`); one whose sandbox reached a
 * resource limit fails (SANDBOX_LIMIT_REACHED); a sandbox no live session owns is destroyed unless
 * the warm pool keeps it (warm-pool.ts reconcile()); a
 * running one new to this process is adopted (its egress proxy and agent channel served again, the
 * idle clock started). Each running sandbox's lease is renewed (an agent health request), then the
 * timeouts apply (timeouts.ts). Sessions still booting are left to their boot and its deadline.
 * It is the backstop: the session manager also ends a session at once when the relay or a viewer
 * finds its sandbox gone (`endIfSandboxExited`, `sandboxOf`).
 */
export class Reconciler {
  readonly #o: ReconcilerOptions;
  #timer: NodeJS.Timeout | null = null;
  /** The pass under way, which stop() waits for. */
  #running: Promise<void> | null = null;
  #isStopped = false;
  /** Without a pool: the marks a previous server left are dropped once. */
  #hasDroppedPoolMarks = false;

  constructor(options: ReconcilerOptions) {
    this.#o = options;
  }

  /** One pass. Returns how many sessions it ended and how many sandboxes it destroyed. */
  async pass(): Promise<{ ended: number; destroyed: number }> {
    const o = this.#o;
    // Sandboxes first, then sessions: a boot records its sandbox id before it creates the sandbox
    // (and a take from the pool in the same statement), so every sandbox listed whose session
    // is live shows up as owned.
    const passStartedAt = Date.now();
    // A fenced node judges nothing: its sandboxes are gone and its sessions are the reaper's, or the next generation's.
    if (!o.node.isInGoodStanding()) return { ended: 0, destroyed: 0 };
    const { generation } = o.node.fence();
    const sandboxes = await o.driver.list();
    // This node's sessions only (and those from before nodes): another node's sandboxes are not in this driver.
    const sessions = (await o.store.listSessions({ states: liveStates, nodeId: o.node.id, limit: 10_000 })).filter(
      (session) => session.node === null || session.node.generation === generation,
    );
    const byId = new Map(sandboxes.map((s) => [s.id as string, s]));
    const owned = new Set<string>();
    let ended = 0;
    let destroyed = 0;
    for (const session of sessions) {
      if (session.sandboxId) owned.add(session.sandboxId);
      if (o.isBooting(session.id)) continue;
      const sandbox = session.sandboxId ? byId.get(session.sandboxId) : undefined;
      if (sandbox?.limitReached) {
        // The kernel killed or refused something in it: what is left of the desktop is not whole.
        const limit = sandbox.limitReached;
        await o
          .fail(session.id, 'SANDBOX_LIMIT_REACHED', `${limit.charAt(0).toUpperCase()}${limit.slice(1)}; porthole closed it. Start a new session.`, { limit })
          .catch((error) => o.log.warn({ err: error, sessionId: session.id }, 'reconcile: could not fail session'));
        o.metrics.reconcilerActions.inc({ action: 'limit_reached' });
        ended++;
        continue;
      }
      if (sandbox?.status === 'running') {
        // A sandbox adopted after a restart (or whose listeners failed) gets its proxy and channel back.
        if (sandbox.host && !o.sandboxHost?.isAttached(session.id)) {
          await o.sandboxHost
            ?.attach(session.id, sandbox)
            .catch((error: unknown) =>
              o.log.warn({ err: error, sessionId: session.id }, 'reconcile: could not serve the sandbox its egress proxy and agent channel'),
            );
        }
        // Renews the sandbox's lease (the agent ends a sandbox whose server is gone for good).
        void fetchAgentHealth(sandbox.agent, { timeoutMs: 2_000 }).catch(() => {});
        const now = Date.now();
        await this.#adopt(session, now);
        if (await o.timeouts.apply(session, now)) ended++;
        continue;
      }
      await o
        .end(session.id, 'sandbox_exited', sandboxGoneDetail(session, sandbox ?? null))
        .catch((error) => o.log.warn({ err: error, sessionId: session.id }, 'reconcile: could not end session'));
      o.metrics.reconcilerActions.inc({ action: 'ended' });
      ended++;
    }
    const unowned = sandboxes.filter((sandbox) => !owned.has(sandbox.id) && !o.isOtherwiseOwned?.(sandbox.id));
    const pooled = o.pool ? await o.pool.reconcile(unowned, passStartedAt) : new Set<string>();
    if (!o.pool && !this.#hasDroppedPoolMarks) {
      // No pool on this server (PORTHOLE_WARM_POOL=0): what the last one pooled goes below, and so do
      // its marks. Only a previous server made marks, so the first pass is the only one with any.
      for (const mark of await o.store.listPooledSandboxes(o.node.id)) await o.store.removePooledSandbox(mark.sandboxId);
      this.#hasDroppedPoolMarks = true;
    }
    for (const sandbox of unowned) {
      if (pooled.has(sandbox.id)) continue;
      o.log.info({ sandboxId: sandbox.id }, 'reconcile: destroying sandbox that no live session owns');
      await o.driver.destroy(sandbox.id as SandboxId);
      o.metrics.reconcilerActions.inc({ action: 'destroyed' });
      destroyed++;
    }
    return { ended, destroyed };
  }

  /** Runs a pass every `intervalMs` (the first one interval from now) until stop(). */
  start(): void {
    const tick = () => {
      this.#running = this.pass()
        .then(() => undefined)
        .catch((error) => this.#o.log.warn({ err: error }, 'reconcile failed; retrying'))
        .finally(() => {
          this.#running = null;
          if (!this.#isStopped) this.#timer = setTimeout(tick, this.#o.intervalMs).unref();
        });
    };
    this.#timer = setTimeout(tick, this.#o.intervalMs).unref();
  }

  /** No further pass; waits for the one under way. Idempotent. */
  async stop(): Promise<void> {
    this.#isStopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    await this.#running;
  }

  /**
   * A running session first seen by this process (a restart) is adopted. Viewer counts live in
   * memory, so nobody is connected until they reconnect: an `authenticating` session goes back to
   * ready, and the idle clock starts now.
   */
  async #adopt(session: Session, now: number): Promise<void> {
    const id = session.id;
    if (this.#o.viewers.count(id) > 0 || this.#o.timeouts.hasIdleClock(id)) return;
    this.#o.timeouts.startIdleClock(id, now);
    if (session.state === 'authenticating') await this.#o.transition(id, { from: 'authenticating', to: 'ready', reason: 'no_viewer' });
    this.#o.log.info({ sessionId: id, sandboxId: session.sandboxId }, 'reconcile: adopted running sandbox');
    this.#o.metrics.reconcilerActions.inc({ action: 'adopted' });
  }
}
