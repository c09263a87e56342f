// How a viewer's connection closes because of its session's state: the one table. The relay reads
// it when a viewer arrives, the session manager when a session ends and closes its viewers, and the
// viewer's sentences compare codes by name against the same registry. Close codes are 4000 + the
// error's HTTP status with the error code as reason (src/protocol/errors.ts); the one normal
// ending, credentials captured, is 1000 `completed`. No zod here: the viewer bundles this file.

import { closeCodeOf, type ErrorCode } from './errors.js';
import type { SessionState } from './session-states.js';

/** The normal ending: the credential is captured. A viewer closed with it never reconnects. */
export const completedClose = { code: 1000, reason: 'completed' } as const;

/** A close the session's state decides: the completed one, or an error's code and name. */
export type SessionClose = typeof completedClose | { readonly code: number; readonly reason: ErrorCode };

/** What the table reads of a session. */
export interface SessionCloseFacts {
  readonly state: SessionState;
  /** For terminal states: the end reason, or the error code of a failure. */
  readonly reason: string | null;
}

/**
 * The error code of a session that ended without completing, each ending its own: failed →
 * SESSION_FAILED (NODE_LOST when its host was lost); ended by the idle timeout → SESSION_IDLE_TIMEOUT, by its maximum lifetime →
 * SESSION_EXPIRED, any other way → SESSION_ENDED. Null for a live or a completed session.
 */
export function endingCodeOf(session: SessionCloseFacts): ErrorCode | null {
  // A lost host is its own ending: the viewer names the host rather than a hop of the session.
  if (session.state === 'failed') return session.reason === 'NODE_LOST' ? 'NODE_LOST' : 'SESSION_FAILED';
  if (session.state !== 'ended') return null;
  if (session.reason === 'idle_timeout') return 'SESSION_IDLE_TIMEOUT';
  if (session.reason === 'max_lifetime') return 'SESSION_EXPIRED';
  return 'SESSION_ENDED';
}

/**
 * How a viewer's connection to this session closes: completed → 1000 `completed`; failed or ended
 * → its ending's code (endingCodeOf); starting → 4409 SESSION_NOT_READY (the desktop is not there
 * yet). Null when the session may be shown (ready, authenticating). Pure; `test/protocol/close.test.ts`
 * pins the table.
 */
export function closeFor(session: SessionCloseFacts): SessionClose | null {
  if (session.state === 'completed') return completedClose;
  const code = session.state === 'starting' ? 'SESSION_NOT_READY' : endingCodeOf(session);
  return code === null ? null : { code: closeCodeOf(code), reason: code };
}

/** Whether a close is the completed one (1000 `completed`). */
export function isCompletedClose(code: number, reason: string): boolean {
  return code === completedClose.code && reason === completedClose.reason;
}
