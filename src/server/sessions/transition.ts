import type { Logger } from 'pino';
import { AppError } from '../../protocol/errors.js';
import type { SessionId } from '../../protocol/ids.js';
import { canTransition, isTerminal, type Session, type SessionState } from '../../protocol/session.js';
import type { NodeFence, Store } from '../../store/store.js';
import type { Metrics } from '../metrics.js';

/** A state change the session layer asks for. */
export interface StateChange {
  to: SessionState;
  /** An end reason, the error code of a failure, or a short word for a live move (`viewer_connected`). */
  reason: string;
  /** Only while the session is still in this state (a live move: ready ⇄ authenticating, starting → ready). */
  from?: SessionState;
  /** For terminal states: the human sentence naming why. */
  detail?: string | null;
  details?: Record<string, unknown>;
}

export interface TransitionDeps {
  store: Store;
  metrics: Metrics;
  /** The session layer's logger. */
  log: Logger;
  /** A node's changes carry its generation (Store.transition's fence); none for a server's. */
  fence?: () => NodeFence | undefined;
}

/** How often a move is tried again after another change won the compare-and-set. */
const maxConflictRetries = 5;

/**
 * The one door through which the server changes a session's state (cf. noVNC's
 * `_updateConnectionState`). Every change is the store's compare-and-set transition, which checks
 * the transition table and writes the `session.<to>` event in the same transaction; each one that
 * happens logs one info line ("session state changed": sessionId, from, to, reason) and counts in
 * `transitions` (and a failure in `errors`, surface `session`). Idempotent: a move that does not
 * apply — the session is terminal, the table has no such move from its state, or it is no longer at
 * `from` — returns the session as it is. A lost compare-and-set is read again and retried.
 * Throws SESSION_NOT_FOUND for an unknown id, SESSION_STATE_CONFLICT after repeated lost races, and
 * whatever the store throws.
 */
export async function transitionSession(deps: TransitionDeps, id: SessionId, change: StateChange): Promise<Session> {
  const { to, reason } = change;
  for (let attempt = 0; ; attempt++) {
    const session = await deps.store.getSession(id);
    if (!session) throw new AppError('SESSION_NOT_FOUND', { details: { sessionId: id } });
    const from = session.state;
    if ((change.from !== undefined && from !== change.from) || isTerminal(from) || !canTransition(from, to)) return session;
    try {
      const moved = await deps.store.transition(id, {
        from,
        to,
        expectVersion: session.version,
        reason,
        detail: change.detail ?? null,
        details: change.details,
        fence: deps.fence?.(),
      });
      deps.log.info({ sessionId: id, from, to, reason }, 'session state changed');
      deps.metrics.transitions.inc({ to, reason });
      if (to === 'failed') deps.metrics.errors.inc({ code: reason, surface: 'session' });
      return moved;
    } catch (error) {
      if (!(error instanceof AppError && error.code === 'SESSION_STATE_CONFLICT') || attempt >= maxConflictRetries) throw error;
    }
  }
}
