// The tests' one way to wait for a condition: poll it, never sleep for it. A sleep stays only where
// a test asserts that nothing happens for a while, with a comment saying why nothing else shows it.

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
