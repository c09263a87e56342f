// The one backoff formula: exponential from a first delay, capped, optionally jittered. Used by the
// agent's retries towards the server (agent/server-client.ts), its restarts of a crashed child
// (agent/supervised-process.ts) and the viewer's reconnects (viewer/lib/reconnect-backoff.ts).
// Pure, no timers: each caller waits its own way.

export interface Backoff {
  /** The delay before the first retry. */
  readonly firstMs: number;
  /** No delay is longer. */
  readonly maxMs: number;
  /** Each delay is spread by ± this fraction (0.2: ±20 %), so that clients dropped together do not come back together; 0 by default. */
  readonly jitter?: number;
}

/**
 * The delay before retry `retry` (0-based): firstMs·2^retry, capped at maxMs, then spread by the
 * jitter and kept within [firstMs, maxMs], rounded to whole milliseconds. A negative retry counts
 * as 0. `random` returns [0, 1) (Math.random; tests pass their own).
 */
export function backoffDelayMs(backoff: Backoff, retry: number, random: () => number = Math.random): number {
  const { firstMs, maxMs, jitter = 0 } = backoff;
  const base = Math.min(maxMs, firstMs * 2 ** Math.max(0, retry));
  const spread = jitter === 0 ? base : base * (1 - jitter + 2 * jitter * random());
  return Math.round(Math.min(maxMs, Math.max(firstMs, spread)));
}
