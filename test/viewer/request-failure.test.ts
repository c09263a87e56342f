import assert from 'node:assert/strict';
import { test } from 'node:test';
import { errorRegistry, type ErrorCode } from '../../src/protocol/errors.js';
import { ApiError } from '../../src/viewer/lib/api-client.js';
import { Catalogue } from '../../src/viewer/lib/catalogue.js';
import { isRetryable, refusalOf, retryableCause } from '../../src/viewer/lib/request-failure.js';
import { retryingPhrase } from '../../src/viewer/lib/sentences.js';

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

const catalogue = new Catalogue();

test('while waiting, the person hears the service cannot be reached or has a problem; the code and request id are for the operator', () => {
  const store = retryableCause(apiError('STORE_UNAVAILABLE'));
  assert.equal(catalogue.format(retryingPhrase(store, 1_500)), 'The service has a problem. Trying again in 2 s…');
  assert.equal(store.operator, 'The database does not answer; nothing was changed. (STORE_UNAVAILABLE, request req_1)');
  for (const error of [new ApiError(0, 'NETWORK', 'The porthole server cannot be reached.'), new ApiError(503, 'HTTP_503', 'x')]) {
    assert.equal(catalogue.format(retryingPhrase(retryableCause(error), 200)), 'The service cannot be reached. Trying again in 1 s…');
  }
});

test('a refusal says why, in a final phase', () => {
  assert.deepEqual(refusalOf(apiError('SESSION_NOT_FOUND')).title, { key: 'title.cannotShow' });
  assert.match(catalogue.format(refusalOf(apiError('SESSION_NOT_FOUND')).notice.person), /^This session does not exist/);
  const expired = refusalOf(apiError('TICKET_EXPIRED'));
  assert.equal(expired.phase, 'closed');
  assert.equal(expired.title?.key, 'title.cannotShow');
  assert.match(catalogue.format(expired.notice.person), /^This viewer link has expired\./);
  const failed = refusalOf(apiError('SESSION_FAILED'));
  assert.equal(failed.phase, 'failed');
  assert.equal(failed.title, undefined, 'the failed phase’s own title');
  assert.deepEqual(failed.outcome, { type: 'failed', code: 'SESSION_FAILED' });
  const ended = refusalOf(apiError('SESSION_ENDED'));
  assert.equal(catalogue.format(ended.notice.person), 'The session has ended.');
  assert.equal(ended.title?.key, 'title.ended');
  assert.deepEqual(ended.outcome, { type: 'ended', reason: null });
  const origin = refusalOf(apiError('ORIGIN_NOT_ALLOWED'));
  assert.equal(origin.phase, 'closed');
  assert.equal(origin.notice.person.key, 'page.notAllowed');
  assert.equal(origin.notice.operator, `${errorRegistry.ORIGIN_NOT_ALLOWED.message} (ORIGIN_NOT_ALLOWED, request req_1)`);
});
