import assert from 'node:assert/strict';
import { test } from 'node:test';
import { errorRegistry, type ErrorCode } from '../../src/protocol/errors.js';
import { ApiError } from '../../src/viewer/lib/api-client.js';
import { isRetryable, refusalOf, retryableSentence } from '../../src/viewer/lib/request-failure.js';

/** An error as porthole's API answers it: the registry's status and message for `code`. */
function apiError(code: ErrorCode, requestId = 'req_1'): ApiError {
  return new ApiError(errorRegistry[code].status, code, errorRegistry[code].message, requestId);
}

test('no answer, a proxy in front, and porthole’s own 5xx are worth asking again; a 4xx is not', () => {
  assert.ok(isRetryable(new TypeError('fetch failed')), 'not an ApiError at all');
  assert.ok(isRetryable(new ApiError(0, 'NETWORK', 'The porthole server cannot be reached.')));
  assert.ok(isRetryable(new ApiError(502, 'HTTP_502', 'The server answered 502 without an error body.')));
  assert.ok(isRetryable(apiError('STORE_UNAVAILABLE')));
  assert.equal(isRetryable(apiError('SESSION_NOT_FOUND')), false);
  assert.equal(isRetryable(apiError('TICKET_EXPIRED')), false);
});

test('the sentence while waiting names porthole’s error, or says the server cannot be reached', () => {
  assert.equal(
    retryableSentence(apiError('STORE_UNAVAILABLE'), 1_500),
    'The database does not answer; nothing was changed. (STORE_UNAVAILABLE, request req_1) — retrying in 2 s…',
  );
  assert.equal(retryableSentence(new ApiError(0, 'NETWORK', 'x'), 200), 'The porthole server cannot be reached — retrying in 1 s…');
  assert.equal(retryableSentence(new ApiError(503, 'HTTP_503', 'x'), 4_000), 'The porthole server cannot be reached — retrying in 4 s…');
});

test('a refusal says why, in a final phase', () => {
  const cannotShow = 'This session cannot be shown';
  assert.deepEqual(refusalOf(apiError('SESSION_NOT_FOUND')), { phase: 'closed', sentence: 'This session does not exist.', title: cannotShow });
  const expired = refusalOf(apiError('TICKET_EXPIRED'));
  assert.equal(expired.phase, 'closed');
  assert.equal(expired.title, cannotShow);
  assert.match(expired.sentence, /^This viewer link has expired\./);
  const failed = refusalOf(apiError('SESSION_FAILED'));
  assert.equal(failed.phase, 'failed');
  assert.equal(failed.title, undefined, 'the failed phase’s own title');
  assert.deepEqual(refusalOf(apiError('SESSION_ENDED')), { phase: 'closed', sentence: 'The session has ended.', title: 'Session ended' });
  assert.deepEqual(refusalOf(apiError('ORIGIN_NOT_ALLOWED')), {
    phase: 'closed',
    sentence: `${errorRegistry.ORIGIN_NOT_ALLOWED.message} (ORIGIN_NOT_ALLOWED, request req_1)`,
    title: cannotShow,
  });
});
