import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backoffDelayMs } from '../../src/protocol/backoff.js';
import { reconnectDelayMs } from '../../src/viewer/lib/reconnect-backoff.js';

// The one backoff formula, with the delays each caller has always had.

test('doubles from the first delay up to the cap', () => {
  const delays = [0, 1, 2, 3, 4, 5, 6].map((retry) => backoffDelayMs({ firstMs: 250, maxMs: 8_000 }, retry));
  assert.deepEqual(delays, [250, 500, 1_000, 2_000, 4_000, 8_000, 8_000]);
});

test('a negative retry counts as the first', () => {
  assert.equal(backoffDelayMs({ firstMs: 250, maxMs: 8_000 }, -1), 250);
});

test('jitter spreads each delay by ± the fraction and stays within [first, max]', () => {
  const backoff = { firstMs: 1_000, maxMs: 15_000, jitter: 0.2 };
  assert.equal(
    backoffDelayMs(backoff, 2, () => 0),
    3_200,
  );
  assert.equal(
    backoffDelayMs(backoff, 2, () => 0.5),
    4_000,
  );
  assert.equal(
    backoffDelayMs(backoff, 2, () => 0.999_999),
    4_800,
  );
  assert.equal(
    backoffDelayMs(backoff, 0, () => 0),
    1_000,
    'never below the first delay',
  );
  assert.equal(
    backoffDelayMs(backoff, 9, () => 0.999_999),
    15_000,
    'never above the cap',
  );
  assert.equal(
    backoffDelayMs(backoff, 9, () => 0),
    12_000,
  );
});

test('the viewer reconnects after 1 s, 2 s, 4 s, 8 s, then 15 s, each ±20 %', () => {
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5].map((attempt) => reconnectDelayMs(attempt, () => 0.5)),
    [1_000, 2_000, 4_000, 8_000, 15_000, 15_000],
  );
  assert.deepEqual(
    [0, 1, 2, 3, 4].map((attempt) => reconnectDelayMs(attempt, () => 0)),
    [1_000, 1_600, 3_200, 6_400, 12_000],
  );
});
