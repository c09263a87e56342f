import type { SessionId } from '../../protocol/ids.js';
import type { EndReason, Session } from '../../protocol/session.js';
import type { Metrics } from '../metrics.js';
import type { ViewerRegistry } from './viewer-registry.js';

export interface SessionTimeoutsOptions {
  viewers: ViewerRegistry;
  metrics: Metrics;
  /** A live session with no viewer for this long ends (`idle_timeout`). */
  idleTimeoutMs: number;
  /** A session older than this ends (`max_lifetime`). */
  maxLifetimeMs: number;
  /** Ends a session (SessionManager.end). */
  end(id: SessionId, reason: EndReason, detail: string): Promise<Session>;
}

/**
 * The idle clock and the two timeouts a running session can reach: max lifetime (from its
 * creation) and idle (no viewer connected). The reconcile tick applies them (reconciler.ts); the
 * boot's own deadline is in boot.ts. The idle clock is in memory: it starts when a session becomes
 * ready, when its last viewer leaves and when a restarted server adopts it, and stops while a
 * viewer is connected.
 */
export class SessionTimeouts {
  readonly #o: SessionTimeoutsOptions;
  /** Since when each live session has had no viewer (absent while one is connected). */
  readonly #idleSince = new Map<SessionId, number>();

  constructor(options: SessionTimeoutsOptions) {
    this.#o = options;
  }

  /** Starts (or restarts) the session's idle clock at `now`. */
  startIdleClock(id: SessionId, now = Date.now()): void {
    this.#idleSince.set(id, now);
  }

  /** A viewer connected, or the session is over: no idle clock. */
  stopIdleClock(id: SessionId): void {
    this.#idleSince.delete(id);
  }

  /** Whether this process runs an idle clock for the session (false for one it has not seen yet). */
  hasIdleClock(id: SessionId): boolean {
    return this.#idleSince.has(id);
  }

  /**
   * Ends a running session that is past its maximum lifetime (`max_lifetime`), or that has had no
   * viewer for the idle timeout (`idle_timeout`). Returns whether it ended it.
   */
  async apply(session: Session, now = Date.now()): Promise<boolean> {
    const id = session.id;
    const ageMs = now - Date.parse(session.createdAt);
    if (ageMs >= this.#o.maxLifetimeMs) {
      await this.#o.end(id, 'max_lifetime', `The session reached its maximum lifetime of ${Math.round(this.#o.maxLifetimeMs / 1000)} s.`);
      this.#o.metrics.reconcilerActions.inc({ action: 'max_lifetime' });
      return true;
    }
    const idleSince = this.#idleSince.get(id);
    if (this.#o.viewers.count(id) === 0 && idleSince !== undefined && now - idleSince >= this.#o.idleTimeoutMs) {
      await this.#o.end(id, 'idle_timeout', `No viewer was connected for ${Math.round(this.#o.idleTimeoutMs / 1000)} s.`);
      this.#o.metrics.reconcilerActions.inc({ action: 'idle_timeout' });
      return true;
    }
    return false;
  }
}
