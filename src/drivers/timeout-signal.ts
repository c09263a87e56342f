/**
 * Like AbortSignal.timeout(ms), but held by a timer: on Node 20 an AbortSignal.timeout() that only
 * an AbortSignal.any() refers to can be garbage-collected before it fires, and a boot deadline then
 * never comes (measured: a boot with an agent that never answered stayed `starting` for a minute
 * under a 2 s deadline; nodejs/node#57736). The timer is unref'd, so it keeps nothing alive.
 */
export function timeoutSignal(ms: number): AbortSignal {
  const controller = new AbortController();
  setTimeout(() => controller.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError')), ms).unref();
  return controller.signal;
}
