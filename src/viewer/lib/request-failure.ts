// What the viewer does when a request to porthole's API fails: ask again later (and what to say
// meanwhile), or stop with a final sentence. Pure: no DOM (test/viewer/request-failure.test.ts).

import { ApiError, describeApiError } from './api-client.js';
import type { FinalPhase } from './connection-phases.js';
import { failedSentence, sessionTitle, ticketSentence, unreachableSentence } from './sentences.js';

/** True when asking again later may help: no answer, or the server's own 5xx (e.g. STORE_UNAVAILABLE). */
export function isRetryable(error: unknown): boolean {
  return !(error instanceof ApiError) || error.isUnreachable || error.status >= 500;
}

/** The sentence while waiting `inMs` to ask again after a retryable failure. */
export function retryableSentence(error: unknown, inMs: number): string {
  if (error instanceof ApiError && !error.isUnreachable) {
    return `${describeApiError(error)} — retrying in ${Math.max(1, Math.ceil(inMs / 1000))} s…`;
  }
  return unreachableSentence(inMs);
}

/** The final phase and words for a request the server refused; `title` absent: the phase's own. */
export interface Refusal {
  phase: FinalPhase;
  sentence: string;
  title?: string;
}

const cannotShow = 'This session cannot be shown';

/** A request the server answered with a 4xx: nothing to retry, only a sentence to show. */
export function refusalOf(error: ApiError): Refusal {
  if (error.status === 404) return { phase: 'closed', sentence: 'This session does not exist.', title: cannotShow };
  if (error.status === 401) return { phase: 'closed', sentence: ticketSentence(error.code), title: cannotShow };
  if (error.code === 'SESSION_FAILED') return { phase: 'failed', sentence: failedSentence('SESSION_FAILED', null) };
  if (error.code === 'SESSION_ENDED') return { phase: 'closed', sentence: error.message, title: sessionTitle('ended') };
  return { phase: 'closed', sentence: describeApiError(error), title: cannotShow };
}
