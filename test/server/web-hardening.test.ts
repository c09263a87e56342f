import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { newSessionId, type SessionId } from '../../src/protocol/ids.js';
import { freeLoopbackPort } from '../support/nginx.js';
import { rawRequest, requestText, webSocketKey } from '../support/raw-http.js';
import { startTestServer, testApiKey, type TestServer } from '../support/server.js';
import { elapse } from '../support/until.js';

// The web surface as the red team probed it: /metrics behind a key (or on its own listener), who
// may frame which page, links and Origin checks that never come from the request's Host, a
// dashboard login that ends (12 h, POST /logout, Secure behind https), viewer ticket chains that
// end, and no source maps. Requests go over raw sockets so that Host and Origin are exactly what
// the test says.

const app = 'https://app.example.com';
const publicUrl = 'https://porthole.example.com';
const maxLifetimeMs = 1_500;
let t: TestServer;
let port: number;
/** PORTHOLE_PUBLIC_URL is https (a TLS proxy in front): links point there and the dashboard cookie is Secure. */
let behindTls: TestServer;
let tlsPort: number;

before(async () => {
  tlsPort = await freeLoopbackPort();
  [t, behindTls] = await Promise.all([
    startTestServer('web-hardening', { PORTHOLE_ALLOWED_ORIGINS: app, PORTHOLE_METRICS_PORT: '0', PORTHOLE_MAX_LIFETIME_MS: String(maxLifetimeMs) }),
    startTestServer('web-hardening-tls', { PORTHOLE_PORT: String(tlsPort), PORTHOLE_PUBLIC_URL: publicUrl }),
  ]);
  port = Number(new URL(t.server.url).port);
});
after(async () => {
  await Promise.all([t?.stop(), behindTls?.stop()]);
});

/** One request with exactly these headers (Host included: nothing is added but Connection: close). */
async function send(method: string, path: string, headers: Record<string, string>, options: { to?: number; body?: string } = {}) {
  const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}`);
  if (options.body !== undefined) lines.push('Content-Type: application/json', `Content-Length: ${Buffer.byteLength(options.body)}`);
  const response = await rawRequest(options.to ?? port, requestText(method, path, [...lines, 'Connection: close'], options.body ?? ''));
  const text = response.body.toString('utf8');
  let json: any = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  return { status: response.status, headers: response.headers, text, json };
}

const own = () => ({ Host: `127.0.0.1:${port}` });
const bearer = { authorization: `Bearer ${testApiKey}` };
/** A dashboard login cookie as GET /login sets it (the link itself is one-time: its own test uses it). */
const cookieOf = (server: TestServer) => `porthole_login=${server.server.tickets.issueLogin(60_000)}`;

describe('/metrics', () => {
  test('needs an API key (or the dashboard login) on the API port', async () => {
    const none = await send('GET', '/metrics', own());
    assert.equal(none.status, 401);
    assert.equal(none.json.error.code, 'UNAUTHENTICATED');
    const wrong = await send('GET', '/metrics', { ...own(), authorization: 'Bearer not-a-key' });
    assert.equal(wrong.json.error.code, 'API_KEY_INVALID');
    const keyed = await send('GET', '/metrics', { ...own(), ...bearer });
    assert.equal(keyed.status, 200);
    assert.match(keyed.text, /^porthole_sessions\{state="ready"\} \d+$/m);
    const dashboard = await send('GET', '/metrics', { ...own(), cookie: cookieOf(t) });
    assert.equal(dashboard.status, 200);
  });

  test('PORTHOLE_METRICS_PORT serves it on a listener of its own without a key, and nothing else there; off by default', async () => {
    assert.ok(t.server.metricsUrl, 'the listener is on');
    const url = new URL(t.server.metricsUrl);
    assert.equal(url.hostname, '127.0.0.1', 'bound to PORTHOLE_METRICS_HOST, loopback by default');
    assert.notEqual(Number(url.port), port);
    const scraped = await fetch(t.server.metricsUrl);
    assert.equal(scraped.status, 200);
    assert.match(await scraped.text(), /^porthole_sessions\{state="ready"\} \d+$/m);
    for (const path of ['/', '/healthz', '/v1/sessions', '/login']) {
      assert.equal((await fetch(`${url.origin}${path}`, { headers: bearer })).status, 404, path);
    }
    assert.equal(behindTls.server.metricsUrl, null);
  });

  test('/healthz and /v1/openapi.json stay public', async () => {
    assert.equal((await send('GET', '/healthz', own())).status, 200);
    assert.equal((await send('GET', '/v1/openapi.json', own())).status, 200);
  });
});

describe('framing', () => {
  test("the dashboard may be framed by porthole alone: CSP frame-ancestors 'self', X-Frame-Options DENY", async () => {
    const dashboard = await send('GET', '/', own());
    assert.equal(dashboard.status, 200);
    assert.match(dashboard.headers['content-security-policy'] ?? '', /; frame-ancestors 'self'$/);
    assert.equal(dashboard.headers['x-frame-options'], 'DENY');
  });

  test('the viewer may be framed by porthole and PORTHOLE_ALLOWED_ORIGINS (and PORTHOLE_PUBLIC_URL), nobody else', async () => {
    const viewer = await send('GET', `/v1/sessions/${newSessionId()}/viewer`, own());
    assert.equal(viewer.status, 200);
    assert.match(viewer.headers['content-security-policy'] ?? '', /; frame-ancestors 'self' https:\/\/app\.example\.com$/);
    assert.equal(viewer.headers['x-frame-options'], undefined, 'X-Frame-Options cannot name an allowed origin: CSP decides');
    const behind = await send('GET', `/v1/sessions/${newSessionId()}/viewer`, { Host: 'porthole.example.com' }, { to: tlsPort });
    assert.match(behind.headers['content-security-policy'] ?? '', /; frame-ancestors 'self' https:\/\/porthole\.example\.com$/);
  });
});

describe('the dashboard login', () => {
  test('the login link sets a 12 h HttpOnly SameSite=Strict cookie (Secure behind https), on a page only porthole may frame', async () => {
    const link = new URL(t.server.loginUrl);
    const direct = await send('GET', link.pathname + link.search, own());
    assert.equal(direct.status, 303);
    assert.match(direct.headers['content-security-policy'] ?? '', /; frame-ancestors 'self'$/);
    assert.equal(direct.headers['x-frame-options'], 'DENY');
    const cookie = direct.headers['set-cookie'] ?? '';
    assert.match(cookie, /^porthole_login=[^;]+; Path=\/; HttpOnly; SameSite=Strict; Max-Age=43200$/, 'plain http: not Secure');

    const tlsLink = new URL(behindTls.server.loginUrl);
    assert.equal(tlsLink.origin, publicUrl, 'the link is on PORTHOLE_PUBLIC_URL');
    const proxied = await send('GET', tlsLink.pathname + tlsLink.search, { Host: 'porthole.example.com' }, { to: tlsPort });
    assert.match(proxied.headers['set-cookie'] ?? '', /; Max-Age=43200; Secure$/, 'PORTHOLE_PUBLIC_URL is https');
  });

  test('POST /logout clears the cookie and refuses its value from then on; from a foreign Origin it is CSRF_REJECTED', async () => {
    const cookie = cookieOf(t);
    assert.equal((await send('GET', '/v1/sessions', { ...own(), cookie })).status, 200);
    const forged = await send('POST', '/logout', { ...own(), cookie, origin: 'http://evil.example' });
    assert.equal(forged.status, 403);
    assert.equal(forged.json.error.code, 'CSRF_REJECTED');
    assert.equal((await send('GET', '/v1/sessions', { ...own(), cookie })).status, 200, 'still logged in');

    const out = await send('POST', '/logout', { ...own(), cookie, origin: `http://127.0.0.1:${port}` });
    assert.equal(out.status, 200, out.text);
    assert.equal(out.headers['set-cookie'], 'porthole_login=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0');
    const after = await send('GET', '/v1/sessions', { ...own(), cookie });
    assert.equal(after.status, 401, 'a copy of the cookie kept elsewhere is refused too');
    assert.equal(after.json.error.code, 'UNAUTHENTICATED');
    assert.equal((await send('GET', '/v1/sessions', { ...own(), cookie: cookieOf(t) })).status, 200, 'another login is not affected');

    const tls = await send('POST', '/logout', { Host: 'porthole.example.com', cookie: cookieOf(behindTls), origin: publicUrl }, { to: tlsPort });
    assert.equal(tls.headers['set-cookie'], 'porthole_login=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0; Secure');
  });
});

describe('the request’s Host is never trusted', () => {
  test('a forged Host does not appear in viewerUrl: the listening address, or PORTHOLE_PUBLIC_URL, does', async () => {
    const created = await t.api.createSession({});
    for (const host of ['evil.example', `evil.example:${port}`]) {
      const ticket = await send('POST', `/v1/sessions/${created.id}/ticket`, { Host: host, ...bearer });
      assert.equal(ticket.status, 201, ticket.text);
      assert.ok(ticket.json.viewerUrl.startsWith(`http://127.0.0.1:${port}/v1/sessions/${created.id}/viewer?ticket=`), ticket.json.viewerUrl);
      assert.doesNotMatch(ticket.json.viewerUrl, /evil/);
    }
    // The test client of this server would go to PORTHOLE_PUBLIC_URL: ask on its real port.
    const behind = (await send('POST', '/v1/sessions', { Host: 'evil.example', ...bearer }, { to: tlsPort, body: '{}' })).json;
    const link = await send('POST', `/v1/sessions/${behind.id}/ticket`, { Host: 'evil.example', ...bearer }, { to: tlsPort });
    assert.ok(link.json.viewerUrl.startsWith(`${publicUrl}/v1/sessions/${behind.id}/viewer?ticket=`), link.json.viewerUrl);
  });

  const upgrade = (origin: string, host: string) => {
    const id = newSessionId();
    const ticket = t.server.tickets.issue(id as SessionId).ticket;
    return rawRequest(
      port,
      requestText('GET', `/v1/sessions/${id}/vnc?ticket=${encodeURIComponent(ticket)}`, [
        `Host: ${host}`,
        `Origin: ${origin}`,
        'Connection: Upgrade',
        'Upgrade: websocket',
        'Sec-WebSocket-Version: 13',
        `Sec-WebSocket-Key: ${webSocketKey()}`,
      ]),
    );
  };

  test('a WebSocket upgrade whose Origin matches a forged Host (DNS rebinding) is refused 403 ORIGIN_NOT_ALLOWED', async () => {
    for (const host of ['evil.example', `evil.example:${port}`]) {
      const refused = await upgrade(`http://${host}`, host);
      assert.equal(refused.status, 403, host);
      assert.equal(JSON.parse(refused.body.toString()).error.code, 'ORIGIN_NOT_ALLOWED');
    }
    // The listening address's own origins and the configured one pass, whatever Host says (the phantom session then closes 4404).
    for (const origin of [`http://127.0.0.1:${port}`, `http://localhost:${port}`, app]) {
      const passed = await upgrade(origin, 'evil.example');
      assert.equal(passed.status, 101, origin);
      passed.socket?.destroy();
    }
  });

  test('a dashboard change from a page on a forged Host is refused CSRF_REJECTED', async () => {
    const forged = await send(
      'POST',
      '/v1/sessions',
      { Host: `evil.example:${port}`, origin: `http://evil.example:${port}`, cookie: cookieOf(t) },
      { body: '{}' },
    );
    assert.equal(forged.status, 403);
    assert.equal(forged.json.error.code, 'CSRF_REJECTED');
  });
});

test('a chain of renewed viewer tickets ends after PORTHOLE_MAX_LIFETIME_MS (at most 12 h): TICKET_RENEWAL_LIMIT; an API key starts a new one', async () => {
  const session = await t.api.createSession({});
  const renew = (ticket: string) => send('POST', `/v1/sessions/${session.id}/ticket`, { ...own(), authorization: `Ticket ${ticket}` });
  const first = await t.api.createTicket(session.id);
  const chainStartedAt = Date.now();
  const second = await renew(first.ticket);
  assert.equal(second.status, 201, second.text);
  const third = await renew(second.json.ticket);
  assert.equal(third.status, 201, 'a renewed ticket renews');
  // The condition is the clock itself: the chain's end is a time, and nothing shows it sooner.
  await elapse(chainStartedAt + maxLifetimeMs + 100 - Date.now(), 'the ticket chain outlives PORTHOLE_MAX_LIFETIME_MS');
  const refused = await renew(third.json.ticket);
  assert.equal(refused.status, 403, 'the newest ticket of the chain is still valid, but its chain is over');
  assert.equal(refused.json.error.code, 'TICKET_RENEWAL_LIMIT');
  assert.equal(
    (await send('GET', `/v1/sessions/${session.id}`, { ...own(), authorization: `Ticket ${third.json.ticket}` })).status,
    200,
    'the last ticket lives out its TTL',
  );
  const fresh = await t.api.createTicket(session.id);
  assert.equal((await renew(fresh.ticket)).status, 201, 'an API key starts a new chain');
});

test('no source maps: none built for the browser bundles, none served', async () => {
  const viewerDir = fileURLToPath(new URL('../../viewer/', import.meta.url));
  const built = await readdir(viewerDir);
  assert.ok(built.includes('viewer.js') && built.includes('dashboard.js'), built.join(', '));
  assert.deepEqual(
    built.filter((name) => name.endsWith('.map')),
    [],
  );
  for (const bundle of ['viewer.js', 'dashboard.js']) {
    assert.doesNotMatch(await readFile(`${viewerDir}${bundle}`, 'utf8'), /sourceMappingURL/, bundle);
    assert.equal((await send('GET', `/assets/${bundle}`, own())).status, 200);
    const map = await send('GET', `/assets/${bundle}.map`, own());
    assert.equal(map.status, 404);
    assert.equal(map.json.error.code, 'ROUTE_NOT_FOUND');
  }
});
