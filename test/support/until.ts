import { debuglog } from 'node:util';

// The tests' one way to wait for a condition: poll it, never sleep for it. Time is let pass only
// where the behaviour under test is about time (a ticket chain's end, a rate limit's Retry-After,
// "nothing happens within N ms"), and then only through elapse(), whose call says why.

/** NODE_DEBUG=porthole-wait shows each deliberate wait and its reason. */
const trace = debuglog('porthole-wait');

export interface UntilOptions {
  /** Between two probes; 200 ms by default. */
  readonly intervalMs?: number;
  /** The probe may throw while the condition does not hold yet (a server restarting): retried, and the last error named on timeout. */
  readonly canProbeFail?: boolean;
  /** Runs before failing on timeout (e.g. a screenshot of what the desktop looked like). */
  readonly onTimeout?: () => Promise<unknown>;
}

/**
 * Polls `probe` until `ok` holds for its value, and returns that value. On timeout it runs
 * `onTimeout` and fails naming `what` and the last value (or error) seen.
 */
export async function until<T>(
  what: string,
  probe: () => Promise<T> | T,
  ok: (value: T) => boolean,
  timeoutMs = 30_000,
  options: UntilOptions = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: { value: T } | { error: unknown } | null = null;
  for (;;) {
    try {
      last = { value: await probe() };
      if (ok(last.value)) return last.value;
    } catch (error) {
      if (!options.canProbeFail) throw error;
      last = { error };
    }
    if (Date.now() > deadline) {
      await options.onTimeout?.().catch(() => {});
      const seen = last && 'value' in last ? `still ${JSON.stringify(last.value)}` : `last error: ${String(last?.error)}`;
      throw new Error(`${what}: ${seen} after ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 200));
  }
}

/** until() for a probe that answers undefined while the condition does not hold. */
export function untilDefined<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000, options: UntilOptions = {}): Promise<T> {
  return until(what, probe, (value) => value !== undefined, timeoutMs, options) as Promise<T>;
}

/**
 * until() for a value that settles: polls `probe` until `ok` holds for its value and it has answered
 * the same (JSON-equal) for `holdMs`, and returns that value. For what has no signal of being done
 * but stops changing when it is (a process tree that has finished starting, a page that has drawn).
 */
export async function untilSteady<T>(
  what: string,
  probe: () => Promise<T> | T,
  ok: (value: T) => boolean,
  holdMs: number,
  timeoutMs = 30_000,
  options: UntilOptions = {},
): Promise<T> {
  let seen: string | undefined;
  let since = 0;
  return until(
    `${what} (unchanged for ${holdMs} ms)`,
    async () => {
      const value = await probe();
      const key = JSON.stringify(value);
      if (key !== seen) {
        seen = key;
        since = Date.now();
      }
      return value;
    },
    (value) => ok(value) && Date.now() - since >= holdMs,
    timeoutMs,
    options,
  );
}

/**
 * Lets `ms` pass on purpose: only where the behaviour under test is about time, so that no
 * condition could be polled instead (a ticket chain's end, a rate limit's Retry-After, an idle
 * period, "nothing happens within N ms"). `why` says which, at the call.
 */
export async function elapse(ms: number, why: string): Promise<void> {
  trace('elapse %d ms: %s', Math.max(0, ms), why);
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}
