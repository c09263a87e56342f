import assert from 'node:assert/strict';
import { test } from 'node:test';
import { reconnectDelayMs, reconnectMaxMs, reconnectMinMs } from '../../src/viewer/lib/reconnect-backoff.js';

test('delays double from 1 s and stop at 15 s', () => {
  const middle = () => 0.5; // no jitter
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5, 20].map((attempt) => reconnectDelayMs(attempt, middle)),
    [1_000, 2_000, 4_000, 8_000, 15_000, 15_000, 15_000],
  );
  assert.equal(reconnectDelayMs(-3, middle), 1_000, 'a negative attempt is the first');
});

test('jitter is ±20 % and never leaves 1–15 s', () => {
  assert.equal(
    reconnectDelayMs(2, () => 0),
    3_200,
  );
  assert.equal(
    reconnectDelayMs(2, () => 0.999_999),
    4_800,
  );
  assert.equal(
    reconnectDelayMs(0, () => 0),
    reconnectMinMs,
    'below 1 s is raised to 1 s',
  );
  assert.equal(
    reconnectDelayMs(10, () => 0.999_999),
    reconnectMaxMs,
    'above 15 s is cut to 15 s',
  );
  for (let attempt = 0; attempt < 10; attempt++) {
    for (let i = 0; i < 50; i++) {
      const ms = reconnectDelayMs(attempt);
      assert.ok(ms >= reconnectMinMs && ms <= reconnectMaxMs, `${attempt}: ${ms}`);
    }
  }
});
