// What the viewer does when a request to porthole's API fails: ask again later (and what to say
// meanwhile), or stop with a final sentence. Pure: no DOM (test/viewer/request-failure.test.ts).

import { ApiError, describeApiError } from './api-client.js';
import { phrase, type Phrase } from './catalogue.js';
import type { FinalPhase } from './connection-phases.js';
import { endedNotice, failedNotice, type Notice, type RetryCause, sessionTitle, ticketNotice } from './sentences.js';

/** True when asking again later may help: no answer, or the server's own 5xx (e.g. STORE_UNAVAILABLE). */
export function isRetryable(error: unknown): boolean {
  return !(error instanceof ApiError) || error.isUnreachable || error.status >= 500;
}

/** Why the viewer asks again after a retryable failure: the service cannot be reached, or has a problem of its own. */
export function retryableCause(error: unknown): RetryCause {
  if (error instanceof ApiError && !error.isUnreachable) return { retryKey: 'service.error.retrying', operator: describeApiError(error) };
  return { retryKey: 'service.unreachable.retrying', operator: describeApiError(error) };
}

/** The final phase and words for a request the server refused; `title` absent: the phase's own. */
export interface Refusal {
  phase: FinalPhase;
  notice: Notice;
  title?: Phrase;
  /** The session's end this refusal tells of, for the embedding app's `failed` or `ended` message. */
  outcome?: { type: 'failed'; code: string } | { type: 'ended'; reason: null };
}

const cannotShow = phrase('title.cannotShow');

/** A request the server answered with a 4xx: nothing to retry, only a sentence to show. */
export function refusalOf(error: ApiError): Refusal {
  const operator = describeApiError(error);
  if (error.status === 404) return { phase: 'closed', notice: { person: phrase('session.notFound'), operator }, title: cannotShow };
  if (error.status === 401) return { phase: 'closed', notice: ticketNotice(error.code), title: cannotShow };
  if (error.code === 'SESSION_FAILED') return { phase: 'failed', notice: failedNotice('SESSION_FAILED', null), outcome: { type: 'failed', code: error.code } };
  if (error.code === 'SESSION_ENDED') {
    return { phase: 'closed', notice: { person: endedNotice(null).person, operator }, title: sessionTitle('ended'), outcome: { type: 'ended', reason: null } };
  }
  if (error.code === 'ORIGIN_NOT_ALLOWED') return { phase: 'closed', notice: { person: phrase('page.notAllowed'), operator }, title: cannotShow };
  return { phase: 'closed', notice: { person: phrase('viewer.unexpected'), operator }, title: cannotShow };
}
