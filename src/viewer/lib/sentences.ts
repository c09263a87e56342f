// What the viewer tells about a session's state or a closed connection, in one place, built from
// the error registry so a new code cannot silently fall through to a bare "Disconnected". Each
// answer speaks to two audiences (issue 10, item 7): a `Phrase` of the catalogue for the person
// signing in (plain words, what to do), and an `operator` line in porthole's own words (the code,
// the hop, the server's detail) that the viewer puts under "What porthole checked".
// Pure functions: no DOM, so they read (and test) on their own. The dashboard, which is for the
// operator, uses the plain-string helpers at the end.

import { completedClose, isCompletedClose } from '../../protocol/close.js';
import { closeCodeOf, errorRegistry, isErrorCode, type ErrorCode } from '../../protocol/errors.js';
import type { EndReason, Session } from '../../protocol/session.js';
import { providerLabels } from '../../protocol/session-states.js';
import { phrase, type Phrase, type PhraseKey, type PhraseParams } from './catalogue.js';

/** One thing to say: to the person, and (when there is more to it) to the operator. */
export interface Notice {
  person: Phrase;
  operator: string | null;
}

/**
 * Why the viewer is about to try again: the person's sentence (a catalogue key whose template
 * takes `{seconds}`) and the operator's cause.
 */
export interface RetryCause {
  retryKey: PhraseKey;
  operator: string;
  /** The template's other placeholders (`host`). */
  params?: PhraseParams;
}

/** The person's sentence while waiting `inMs` before trying again. */
export function retryingPhrase(cause: RetryCause, inMs: number): Phrase {
  return phrase(cause.retryKey, { ...cause.params, seconds: Math.max(1, Math.ceil(inMs / 1000)) });
}

/** A cause that says the session's machine is not answering, naming it once the viewer knows which (the session's `node`). */
export function namingHost(cause: RetryCause, host: string | null | undefined): RetryCause {
  if (cause.retryKey !== 'host.unreachable.retrying' || !host) return cause;
  return { ...cause, retryKey: 'host.unreachable.named.retrying', params: { ...cause.params, host } };
}

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
  /** The provider refused porthole's refresh: the person must sign in again. */
  needsLogin: boolean;
  /** When porthole last refreshed it. */
  refreshedAt: string | null;
  /** Why the last refresh failed, in the provider's words. */
  refreshError: string | null;
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
    needsLogin: c.state === 'needs_login',
    refreshedAt: typeof c.refreshedAt === 'string' ? c.refreshedAt : null,
    refreshError: typeof c.refreshError === 'string' ? c.refreshError : null,
  };
}

/** The dashboard's note beside an account porthole could not confirm with the provider. */
export function unverifiedNote(provider: string): string {
  return `porthole could only check this credential offline: the account is what the credential file names, not confirmed with ${providerLabel(provider)}.`;
}

export function providerLabel(provider: string): string {
  return Object.hasOwn(providerLabels, provider) ? providerLabels[provider as keyof typeof providerLabels] : provider;
}

/** Where the viewer is shown: on a page of its own, or framed in an app's page. */
export interface ViewerPlace {
  readonly isFramed: boolean;
}

/**
 * The completed sentence's keys: on its own page the person is told they may close it; framed, the
 * page is the app's, so the sentence says who is connected and stops there.
 */
const completedKeys = {
  page: { account: 'completed.account', provider: 'completed.provider', plain: 'completed.plain' },
  framed: { account: 'completed.framed.account', provider: 'completed.framed.provider', plain: 'completed.framed.plain' },
} as const satisfies Record<'page' | 'framed', Record<'account' | 'provider' | 'plain', PhraseKey>>;

/** After the session completed: who is connected to what, from the session's record (`{}` when it could not be read). */
export function completedNotice(session: { provider?: string | null; credential?: unknown }, place: ViewerPlace): Notice {
  const keys = completedKeys[place.isFramed ? 'framed' : 'page'];
  const credential = sessionCredential(session);
  const provider = credential?.provider ?? session.provider ?? null;
  const operator = credential && !credential.isVerified ? unverifiedNote(credential.provider) : null;
  if (provider === null) return { person: phrase(keys.plain), operator };
  if (credential?.account) return { person: phrase(keys.account, { provider: providerLabel(provider), account: credential.account }), operator };
  return { person: phrase(keys.provider, { provider: providerLabel(provider) }), operator };
}

/** The account the completed session's credential names, or null. */
export function completedAccount(session: object): string | null {
  return sessionCredential(session)?.account ?? null;
}

const endPhraseKeys: Record<EndReason, PhraseKey> = {
  user: 'ended.user',
  idle_timeout: 'ended.idle_timeout',
  max_lifetime: 'ended.max_lifetime',
  sandbox_exited: 'ended.sandbox_exited',
  shutdown: 'ended.shutdown',
};

/** Short labels for the dashboard's reason column. */
export const endReasonLabels: Record<EndReason, string> = {
  user: 'ended by user',
  idle_timeout: 'idle timeout',
  max_lifetime: 'max lifetime',
  sandbox_exited: 'sandbox exited',
  shutdown: 'server shutdown',
};

export function endedNotice(reason: string | null): Notice {
  const isKnown = reason !== null && Object.hasOwn(endPhraseKeys, reason);
  return {
    person: phrase(isKnown ? endPhraseKeys[reason as EndReason] : 'ended.unknown'),
    operator: reason === null ? null : `Ended: ${reason}${isKnown ? ` (${endReasonLabels[reason as EndReason]})` : ''}.`,
  };
}

/**
 * What the person is told when a session failed with `code`: a sentence for each kind of failure
 * they can act on differently, and one for the rest. Every code of the registry lands somewhere.
 */
export function failurePhrase(code: string | null, host: string | null = null): Phrase {
  switch (code) {
    // The session's machine was lost (or fenced itself): the desktop went with it.
    case 'NODE_LOST':
    case 'NODE_FENCED':
      return host ? phrase('failed.hostLost.named', { host }) : phrase('failed.hostLost');
    case 'CREDENTIAL_UNVERIFIED':
      return phrase('failed.unverified');
    case 'CREDENTIAL_INVALID':
    case 'PROVIDER_MISMATCH':
      return phrase('failed.credential');
    case 'BOOT_TIMEOUT':
      return phrase('failed.slow');
    case 'SANDBOX_LIMIT_REACHED':
      return phrase('failed.limit');
    case 'TOO_MANY_SESSIONS':
      return phrase('failed.busy');
    default:
      return phrase('failed.generic');
  }
}

/** The operator's line for a failure: the code, its registry message, and the server's detail (which may name paths and errnos). */
function failureDetail(reason: string | null, detail: string | null): string {
  const message = isErrorCode(reason) ? errorRegistry[reason].message : null;
  // The server's detail often begins with the registry's message already: say it once.
  const says = detail && message && detail.startsWith(message.replace(/\.$/, '')) ? detail : [message, detail].filter(Boolean).join(' ');
  if (reason === null) return says || 'The session failed.';
  return says ? `${reason}: ${says}` : reason;
}

/** `host`: the machine (porthole node) the session ran on, named when its loss is the failure. */
export function failedNotice(reason: string | null, detail: string | null, host: string | null = null): Notice {
  return { person: failurePhrase(reason, host), operator: failureDetail(reason, detail) };
}

/** The dashboard's sentence for a failed session (it is for the operator: the server's detail first). */
export function failedSentence(reason: string | null, detail: string | null): string {
  if (detail) return detail;
  if (isErrorCode(reason)) return `The session failed: ${errorRegistry[reason].message} (${reason})`;
  return reason ? `The session failed (${reason}).` : 'The session failed.';
}

/** What to say about a session as the API reports it, on the viewer's own page or framed in an app's. */
export function sessionNotice(
  session: Pick<Session, 'state' | 'reason' | 'detail'> & { provider?: string | null; credential?: unknown; node?: { id: string } | null },
  place: ViewerPlace,
): Notice {
  switch (session.state) {
    case 'starting':
      return { person: phrase('desktop.starting'), operator: null };
    case 'ready':
    case 'authenticating':
      return { person: phrase('desktop.connecting'), operator: null };
    case 'completed':
      return completedNotice(session, place);
    case 'failed':
      return failedNotice(session.reason, session.detail, session.node?.id ?? null);
    case 'ended':
      return endedNotice(session.reason);
  }
}

/** The viewer's heading over a terminal session's sentence. */
export function sessionTitle(state: Session['state']): Phrase {
  if (state === 'completed') return phrase('title.completed');
  if (state === 'failed') return phrase('title.failed');
  if (state === 'ended') return phrase('title.ended');
  return phrase('title.starting');
}

/** What the viewer does after its WebSocket closed. */
export type CloseAction =
  /**
   * The session is over: read it to say why (its end reason or failure detail), showing `fallback`
   * in `phase` when it cannot be read. `isFinal`: never reconnect, even if the read finds it alive
   * (its machine was lost: the desktop is gone whatever the record says yet).
   */
  | { kind: 'read-session'; fallback: Notice; phase: 'closed' | 'failed'; isFinal: boolean }
  /** The session completed (credentials captured): read it to say who is connected; never reconnect. */
  | { kind: 'completed' }
  /** Nothing to retry: show the sentence and stop. */
  | { kind: 'final'; phase: 'closed' | 'failed'; title: Phrase; notice: Notice }
  /** Possibly passing: check the session is alive, then reconnect, saying this meanwhile. */
  | { kind: 'retry'; cause: RetryCause };

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
/** NODE_LOST: the session's machine stopped answering and was declared lost. */
const hostLostCode = closeCodeOf('NODE_LOST');

const cannotShow = phrase('title.cannotShow');

/** "Closed with 4502 SANDBOX_UNREACHABLE": the operator's view of a close. */
function closeDetail(code: number, reason: string): string {
  return `The connection closed with ${code}${reason ? ` ${reason}` : ''}.`;
}

/** Decides, from the close code and reason alone, how to explain and handle a closed connection. */
export function closeAction(code: number, reason: string, pageOrigin: string): CloseAction {
  if (isCompletedClose(code, reason)) return { kind: 'completed' };
  const operator = closeDetail(code, reason);
  switch (code) {
    case sessionOverCode:
      return reason === 'SESSION_FAILED'
        ? { kind: 'read-session', fallback: { person: failurePhrase(null), operator }, phase: 'failed', isFinal: false }
        : { kind: 'read-session', fallback: { person: endedNotice(null).person, operator }, phase: 'closed', isFinal: false };
    case hostLostCode:
      // The record names the machine and what was last heard of it (the reaper's detail).
      return { kind: 'read-session', fallback: { person: failurePhrase('NODE_LOST'), operator }, phase: 'failed', isFinal: true };
    case notFoundCode:
      return { kind: 'final', phase: 'closed', title: cannotShow, notice: { person: phrase('session.notFound'), operator } };
    case ticketRefusedCode:
      return { kind: 'final', phase: 'closed', title: cannotShow, notice: ticketNotice(reason) };
    case forbiddenCode:
      return { kind: 'final', phase: 'closed', title: cannotShow, notice: forbiddenNotice(reason, pageOrigin) };
    case notReadyCode:
      // 4409 is also NODE_FENCED: the ticket's machine holds another generation now, so that desktop is gone.
      if (reason === 'NODE_FENCED') return { kind: 'read-session', fallback: { person: failurePhrase(reason), operator }, phase: 'failed', isFinal: true };
      return { kind: 'retry', cause: { retryKey: 'desktop.starting.retrying', operator } };
  }
  return { kind: 'retry', cause: retryCause(code, reason) };
}

const ticketPhraseKeys: Partial<Record<string, PhraseKey>> = {
  TICKET_EXPIRED: 'ticket.expired',
  TICKET_MISSING: 'ticket.missing',
  TICKET_INVALID: 'ticket.invalid',
};

export function ticketNotice(code: string): Notice {
  const key = ticketPhraseKeys[code] ?? 'ticket.refused';
  const message = isErrorCode(code) ? ` ${errorRegistry[code].message}` : '';
  return {
    person: phrase(key),
    operator: `porthole refused the viewer’s ticket: ${code}.${message} A new link comes from POST /v1/sessions/:id/ticket (or the dashboard).`,
  };
}

function forbiddenNotice(code: string, pageOrigin: string): Notice {
  if (code === 'TICKET_WRONG_SESSION') return { person: phrase('ticket.wrongSession'), operator: `${code}: ${errorRegistry.TICKET_WRONG_SESSION.message}` };
  if (code === 'ORIGIN_NOT_ALLOWED') {
    return {
      person: phrase('page.notAllowed'),
      operator:
        `porthole refused the connection from this page’s origin (${pageOrigin}): ORIGIN_NOT_ALLOWED. ` +
        'Open the viewer at porthole’s own address, or add this origin to PORTHOLE_ALLOWED_ORIGINS.',
    };
  }
  return { person: phrase('connection.refused'), operator: `porthole refused the connection${code ? ` (${code})` : ''}.` };
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
  'NODE_LOST',
  'NODE_FENCED',
]);

/**
 * Whether a closed connection is worth a diagnosis (GET …/diagnosis): a failure or a drop — 4502,
 * 1006 with no close frame, a handshake timeout — not a normal ending (1000) or a session ending
 * (4408 idle, 4409 still starting, 4410 over, the server shutting down).
 */
export function isWorthDiagnosing(code: number, reason: string): boolean {
  if (code === completedClose.code || code === idleTimeoutCode || code === notReadyCode || code === sessionOverCode || code === hostLostCode) return false;
  return !undiagnosedReasons.has(reason);
}

/** The sandbox side's failures: the desktop does not answer, whichever part of it is down. */
const desktopCodes: ReadonlySet<string> = new Set<ErrorCode>(['SANDBOX_UNREACHABLE', 'AGENT_UNHEALTHY', 'AGENT_VERSION_MISMATCH', 'SANDBOX_START_FAILED']);

/** Why a connection that may come back closed: the person's "… Trying again in N s…" and the operator's cause. */
function retryCause(code: number, reason: string): RetryCause {
  const detail = closeDetail(code, reason);
  const withMessage = isErrorCode(reason) ? `${detail} ${errorRegistry[reason].message}` : detail;
  // The edge could not reach the session's machine: said before the desktop's own 4502s.
  if (reason === 'NODE_UNREACHABLE') return { retryKey: 'host.unreachable.retrying', operator: withMessage };
  if (code === unreachableCode || desktopCodes.has(reason)) return { retryKey: 'desktop.unreachable.retrying', operator: withMessage };
  if (code === bootTimeoutCode || reason === 'BOOT_TIMEOUT') return { retryKey: 'desktop.slow.retrying', operator: withMessage };
  if (reason === 'SERVER_SHUTTING_DOWN') return { retryKey: 'service.restarting.retrying', operator: withMessage };
  if (reason === 'STORE_UNAVAILABLE' || reason === 'INTERNAL') return { retryKey: 'service.error.retrying', operator: withMessage };
  // 1005/1006 and friends (the browser saw the connection die without a reason), and anything new.
  return { retryKey: 'connection.lost.retrying', operator: code === 1006 || code === 1005 ? `${detail} No close frame: the connection dropped.` : withMessage };
}

/** The page's own cause of a closed connection (a handshake timeout, a protocol error): the person hears the connection was lost. */
export function pageRetryCause(operator: string): RetryCause {
  return { retryKey: 'connection.lost.retrying', operator };
}
