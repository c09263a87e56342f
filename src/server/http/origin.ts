/**
 * Whether a browser request's Origin may act on this server: the same host the request was sent
 * to (porthole's own pages), or one of the configured origins (an embedding app). A request with
 * no Origin is not from a browser page (browsers always send it on WebSocket upgrades and on
 * cross-origin fetches), so cross-site request forgery does not apply to it.
 */
export function isOriginAllowed(origin: string | undefined, host: string | undefined, allowed: readonly string[]): boolean {
  if (origin === undefined) return true;
  if (allowed.includes(origin)) return true;
  try {
    return host !== undefined && new URL(origin).host === host;
  } catch {
    return false;
  }
}
