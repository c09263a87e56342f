/**
 * Polls `probe` until `ok` holds for its value, and returns that value. On timeout it runs
 * `onTimeout` (e.g. a screenshot of what the desktop looked like) and fails naming `what` and the
 * last value seen.
 */
export async function until<T>(
  what: string,
  probe: () => Promise<T> | T,
  ok: (value: T) => boolean,
  timeoutMs = 30_000,
  options: { intervalMs?: number; onTimeout?: () => Promise<unknown> } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T = await probe();
  while (!ok(last)) {
    if (Date.now() > deadline) {
      await options.onTimeout?.().catch(() => {});
      throw new Error(`${what}: still ${JSON.stringify(last)} after ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 200));
    last = await probe();
  }
  return last;
}
