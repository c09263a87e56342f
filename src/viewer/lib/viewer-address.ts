// Where the viewer page is, and so where porthole's API is. An app may serve the viewer through its
// own server under a path prefix (`https://app.example/porthole/v1/sessions/ID/viewer`, proxied to
// porthole): the page then must reach the API, the ticket renewals and the WebSocket under that
// same prefix, never at the site's root. The page is always at `<prefix>/v1/sessions/<id>/viewer`,
// which is also why viewer.html names its assets relatively (`../../../assets/…`).
// Pure: no DOM (test/viewer/embed.test.ts).

export interface ViewerAddress {
  /** Everything before `/v1/sessions/`: '' when porthole is served at the root, '/porthole' behind a prefix. */
  apiBase: string;
  /** As it stands in the path (still URL-encoded). */
  sessionId: string;
}

const viewerPath = /^(.*?)\/v1\/sessions\/([^/]+)\/viewer\/?$/;

/** The viewer's address from `location.pathname`, or null when the page is not at a viewer path. */
export function viewerAddressOf(pathname: string): ViewerAddress | null {
  const match = viewerPath.exec(pathname);
  if (!match) return null;
  return { apiBase: match[1] ?? '', sessionId: match[2] ?? '' };
}

/** The API path of the session (`<prefix>/v1/sessions/<id>`), for fetch; `sub` is appended (`/events`). */
export function sessionApiPath(address: ViewerAddress, sub = ''): string {
  return `${address.apiBase}/v1/sessions/${address.sessionId}${sub}`;
}

/** The session's WebSocket URL with `ticket`, on the page's own host and prefix (ws: or wss: as the page). */
export function vncUrl(address: ViewerAddress, ticket: string, pageUrl: string): string {
  const url = new URL(sessionApiPath(address, '/vnc'), pageUrl);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.searchParams.set('ticket', ticket);
  return url.href;
}
