// Every sentence the viewer can show about a session's state or a closed connection, in one place,
// built from the error registry so a new code cannot silently fall through to a bare "Disconnected".
// Pure functions: no DOM, so they read (and test) on their own.

import { completedClose, isCompletedClose } from '../../protocol/close.js';
import { closeCodeOf, errorRegistry, isErrorCode, type ErrorCode } from '../../protocol/errors.js';
import type { EndReason, Session } from '../../protocol/session.js';
import { providerLabels } from '../../protocol/session-states.js';

export const completedSentence = 'Connected — credentials captured.';
export const completedTitle = 'Connected';

/**
 * A session's captured credential as the API reports it (src/protocol/credentials.ts, no content).
 * Read defensively: a server of an earlier version sends no `credential` field at all.
 */
export interface CredentialView {
  provider: string;
  account: string | null;
  capturedAt: string;
  expiresAt: string | null;
  /** false when only porthole's offline checks passed: the account is what the file claims. */
  isVerified: boolean;
}

export function sessionCredential(session: object): CredentialView | null {
  const credential = (session as { credential?: unknown }).credential;
  if (typeof credential !== 'object' || credential === null) return null;
  const c = credential as Record<string, unknown>;
  if (typeof c.provider !== 'string' || typeof c.capturedAt !== 'string') return null;
  return {
    provider: c.provider,
    account: typeof c.account === 'string' && c.account !== '' ? c.account : null,
    capturedAt: c.capturedAt,
    expiresAt: typeof c.expiresAt === 'string' ? c.expiresAt : null,
    isVerified: c.verification === 'verified',
  };
}

/** The dashboard's note beside an account porthole could not confirm with the provider. */
export function unverifiedNote(provider: string): string {
  return `porthole could only check this credential offline: the account is what the credential file names, not confirmed with ${providerLabel(provider)}.`;
}

export function providerLabel(provider: string): string {
  return Object.hasOwn(providerLabels, provider) ? providerLabels[provider as keyof typeof providerLabels] : provider;
}

/** After the server closed the viewer with 1000 `completed`: who is connected to what. */
export function completedSentenceFor(session: { provider?: string | null; credential?: unknown }): string {
  const credential = sessionCredential(session);
  const provider = credential?.provider ?? session.provider ?? null;
  if (provider === null) return completedSentence;
  const who = credential?.account ? ` as ${credential.account}` : '';
  return `Connected to ${providerLabel(provider)}${who}. porthole stored the credential and closed this desktop; you can close this page.`;
}

const endSentences: Record<EndReason, string> = {
  user: 'You ended this session.',
  idle_timeout: 'The session ended because nobody used it for too long (idle timeout).',
  max_lifetime: 'The session ended because it reached its maximum lifetime.',
  sandbox_exited: 'The session ended because its sandbox exited.',
  shutdown: 'The session ended because the porthole server shut down.',
};

/** Short labels for the dashboard's reason column. */
export const endReasonLabels: Record<EndReason, string> = {
  user: 'ended by user',
  idle_timeout: 'idle timeout',
  max_lifetime: 'max lifetime',
  sandbox_exited: 'sandbox exited',
  shutdown: 'server shutdown',
};

export function endedSentence(reason: string | null): string {
  return reason !== null && Object.hasOwn(endSentences, reason) ? endSentences[reason as EndReason] : 'The session has ended.';
}

/** Failures the person can act on get a sentence of their own, before the server's detail. */
const failureSentences: Partial<Record<ErrorCode, string>> = {
  CREDENTIAL_UNVERIFIED:
    'porthole could not confirm this sign-in with the provider, so it stored nothing and closed the desktop. Start a new session to sign in again.',
};

export function failedSentence(reason: string | null, detail: string | null): string {
  const own = isErrorCode(reason) ? failureSentences[reason] : undefined;
  if (own) return detail ? `${own} (${detail.replace(/\.$/, '')})` : own;
  if (detail) return detail;
  if (isErrorCode(reason)) return `The session failed: ${errorRegistry[reason].message} (${reason})`;
  return reason ? `The session failed (${reason}).` : 'The session failed.';
}

/** The sentence for a session as the API reports it. */
export function sessionSentence(session: Pick<Session, 'state' | 'reason' | 'detail'> & { provider?: string | null; credential?: unknown }): string {
  switch (session.state) {
    case 'starting':
      return 'The desktop is starting…';
    case 'ready':
    case 'authenticating':
      return 'The desktop is ready.';
    case 'completed':
      return completedSentenceFor(session);
    case 'failed':
      return failedSentence(session.reason, session.detail);
    case 'ended':
      return endedSentence(session.reason);
  }
}

/** The viewer's heading over a terminal session's sentence. */
export function sessionTitle(state: Session['state']): string {
  if (state === 'completed') return completedTitle;
  if (state === 'failed') return 'The session failed';
  if (state === 'ended') return 'Session ended';
  return 'porthole';
}

/** What the viewer does after its WebSocket closed. */
export type CloseAction =
  /** The session is over: read it to say why (its end reason or failure detail). */
  | { kind: 'read-session'; fallback: string }
  /** The session completed (credentials captured): read it to say who is connected; never reconnect. */
  | { kind: 'completed' }
  /** Nothing to retry: show the sentence and stop. */
  | { kind: 'final'; phase: 'closed' | 'failed'; title: string; sentence: string }
  /** Possibly passing: check the session is alive, then reconnect, saying this meanwhile. */
  | { kind: 'retry'; cause: string };

// The close codes the viewer tells apart, looked up by name in the registry (src/protocol/errors.ts)
// so that a status changed there changes them here. Several errors share a code (4000 + status);
// the comments name the ones the server sends for each.
/** SESSION_ENDED, SESSION_EXPIRED, SESSION_FAILED: the session is over. */
const sessionOverCode = closeCodeOf('SESSION_ENDED');
/** SESSION_NOT_FOUND (also an unknown route). */
const notFoundCode = closeCodeOf('SESSION_NOT_FOUND');
/** TICKET_MISSING, TICKET_INVALID, TICKET_EXPIRED. */
const ticketRefusedCode = closeCodeOf('TICKET_INVALID');
/** TICKET_WRONG_SESSION, ORIGIN_NOT_ALLOWED. */
const forbiddenCode = closeCodeOf('ORIGIN_NOT_ALLOWED');
/** SESSION_NOT_READY: the desktop is still starting. */
const notReadyCode = closeCodeOf('SESSION_NOT_READY');
/** SESSION_IDLE_TIMEOUT. */
const idleTimeoutCode = closeCodeOf('SESSION_IDLE_TIMEOUT');
/** SANDBOX_UNREACHABLE (and the other 502s of the sandbox side). */
const unreachableCode = closeCodeOf('SANDBOX_UNREACHABLE');
/** BOOT_TIMEOUT. */
const bootTimeoutCode = closeCodeOf('BOOT_TIMEOUT');

/** Decides, from the close code and reason alone, how to explain and handle a closed connection. */
export function closeAction(code: number, reason: string, pageOrigin: string): CloseAction {
  if (isCompletedClose(code, reason)) return { kind: 'completed' };
  const cannotShow = 'This session cannot be shown';
  switch (code) {
    case sessionOverCode:
      return reason === 'SESSION_FAILED' ? { kind: 'read-session', fallback: 'The session failed.' } : { kind: 'read-session', fallback: endedSentence(null) };
    case notFoundCode:
      return { kind: 'final', phase: 'closed', title: cannotShow, sentence: 'This session does not exist.' };
    case ticketRefusedCode:
      return { kind: 'final', phase: 'closed', title: cannotShow, sentence: ticketSentence(reason) };
    case forbiddenCode:
      return { kind: 'final', phase: 'closed', title: cannotShow, sentence: forbiddenSentence(reason, pageOrigin) };
    case notReadyCode:
      return { kind: 'retry', cause: 'The desktop is still starting' };
  }
  return { kind: 'retry', cause: retryCause(code, reason) };
}

export function ticketSentence(code: string): string {
  const reopen = 'Open the session again from the dashboard, or ask the app that sent you here for a new link.';
  switch (code) {
    case 'TICKET_EXPIRED':
      return `This viewer link has expired. ${reopen}`;
    case 'TICKET_MISSING':
      return `This viewer link has no ticket. ${reopen}`;
    case 'TICKET_INVALID':
      return `This viewer link is not valid. ${reopen}`;
    default:
      return `porthole did not accept this viewer’s ticket${isErrorCode(code) ? ` (${code})` : ''}. ${reopen}`;
  }
}

function forbiddenSentence(code: string, pageOrigin: string): string {
  if (code === 'TICKET_WRONG_SESSION') return 'This viewer link belongs to another session.';
  if (code === 'ORIGIN_NOT_ALLOWED') {
    return (
      `porthole refused the connection from this page’s origin (${pageOrigin}). ` +
      'Open the viewer at porthole’s own address, or add this origin to PORTHOLE_ALLOWED_ORIGINS.'
    );
  }
  return `porthole refused the connection${isErrorCode(code) ? ` (${code})` : ''}.`;
}

/** Closes that say the session or the server is going (or not there yet): a diagnosis would only repeat them. */
const undiagnosedReasons: ReadonlySet<string> = new Set([
  completedClose.reason,
  'SESSION_NOT_READY',
  'SESSION_IDLE_TIMEOUT',
  'SESSION_ENDED',
  'SESSION_EXPIRED',
  'SESSION_FAILED',
  'SERVER_SHUTTING_DOWN',
]);

/**
 * Whether a closed connection is worth a diagnosis (GET …/diagnosis): a failure or a drop — 4502,
 * 1006 with no close frame, a handshake timeout — not a normal ending (1000) or a session ending
 * (4408 idle, 4409 still starting, 4410 over, the server shutting down).
 */
export function isWorthDiagnosing(code: number, reason: string): boolean {
  if (code === completedClose.code || code === idleTimeoutCode || code === notReadyCode || code === sessionOverCode) return false;
  return !undiagnosedReasons.has(reason);
}

/** The first half of "<cause> — reconnecting in N s…". */
function retryCause(code: number, reason: string): string {
  if (code === unreachableCode || reason === 'SANDBOX_UNREACHABLE') return 'The sandbox’s desktop does not answer';
  if (code === bootTimeoutCode || reason === 'BOOT_TIMEOUT') return 'The sandbox did not become ready in time';
  if (reason === 'SERVER_SHUTTING_DOWN') return 'The porthole server is shutting down';
  if (isErrorCode(reason)) return withoutFinalStop(errorRegistry[reason].message);
  if (code >= 4000 && code < 5000) return `The connection was closed (code ${code}${reason ? `, ${reason}` : ''})`;
  // 1005/1006 and friends: the browser saw the connection die without a reason.
  return 'Connection lost';
}

function withoutFinalStop(sentence: string): string {
  return sentence.replace(/\.$/, '');
}

export function reconnectingSentence(cause: string, inMs: number): string {
  const seconds = Math.max(1, Math.ceil(inMs / 1000));
  return `${cause} — reconnecting in ${seconds} s…`;
}

export function unreachableSentence(inMs: number): string {
  const seconds = Math.max(1, Math.ceil(inMs / 1000));
  return `The porthole server cannot be reached — retrying in ${seconds} s…`;
}
