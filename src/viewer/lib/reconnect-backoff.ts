import { backoffDelayMs } from '../../protocol/backoff.js';

// Reconnect delays: exponential from 1 s to 15 s, with jitter so that many viewers dropped by the
// same server restart do not all come back in the same instant.

export const reconnectMinMs = 1_000;
export const reconnectMaxMs = 15_000;

/** Delay before reconnect attempt `attempt` (0-based): 1 s, 2 s, 4 s, 8 s, 15 s, 15 s… each ±20 %. */
export function reconnectDelayMs(attempt: number, random: () => number = Math.random): number {
  return backoffDelayMs({ firstMs: reconnectMinMs, maxMs: reconnectMaxMs, jitter: 0.2 }, attempt, random);
}
