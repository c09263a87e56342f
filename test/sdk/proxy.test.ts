import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { createPortholeProxy, type PortholeProxy, type ProxiedRoute } from '@porthole/sdk/proxy';
import { ApiClient } from '../../src/cli/api-client.js';
import { freeLoopbackPort } from '../support/nginx.js';
import { rawRequest, requestText, webSocketKey, type RawResponse } from '../support/raw-http.js';
import { startTestServer, testApiKey, type TestServer } from '../support/server.js';
import { until } from '../support/until.js';
import { closeViewer, connectViewer } from '../support/ws.js';

// @porthole/sdk/proxy on a plain node:http server, in front of a real porthole: only the viewer's
// surface goes through (its page, its assets, its WebSocket, the session routes it calls with its
// ticket); the browser's cookies and Bearer never reach porthole, porthole's Set-Cookie never
// reaches the browser, and the app's key goes only to the session routes `authorize` approves.
// Between the proxy and porthole sits a tap that records every request porthole is sent (and adds
// a Set-Cookie to every answer, as porthole's dashboard login would), so "refused" means porthole
// never saw it. Requests are written byte for byte (test/support/raw-http.ts): no client library
// normalises `..`, `%2e%2e` or `//` away before the proxy sees them.

/** What porthole was sent: method, path and query, headers; `isUpgrade` for a WebSocket. */
interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  isUpgrade: boolean;
}

interface Tap {
  origin: string;
  seen: Seen[];
  close(): Promise<void>;
}

/** porthole's dashboard cookie, as the tap adds it to every answer: the proxy must drop it. */
const portholeCookie = 'porthole_login=from-porthole; Path=/; HttpOnly';

/** A recording pass-through to `target` (HTTP and upgrades), adding `portholeCookie` to every answer. */
async function startTap(target: string): Promise<Tap> {
  const seen: Seen[] = [];
  const sockets = new Set<Duplex>();
  const upstream = new URL(target);
  const forward = (request: IncomingMessage) =>
    httpRequest({ hostname: upstream.hostname, port: upstream.port, method: request.method, path: request.url, headers: request.headers, agent: false });
  const server = createServer((request, response) => {
    seen.push({ method: request.method ?? '', url: request.url ?? '', headers: request.headers, isUpgrade: false });
    const out = forward(request);
    out.on('response', (answer) => {
      response.writeHead(answer.statusCode ?? 502, { ...answer.headers, 'set-cookie': portholeCookie });
      answer.pipe(response);
    });
    out.on('error', () => response.destroy());
    request.pipe(out);
  });
  server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    seen.push({ method: request.method ?? '', url: request.url ?? '', headers: request.headers, isUpgrade: true });
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    const out = forward(request);
    const headLines = (status: string, rawHeaders: string[]) => {
      const lines = [status];
      for (let i = 0; i < rawHeaders.length; i += 2) lines.push(`${rawHeaders[i]}: ${rawHeaders[i + 1]}`);
      return `${[...lines, `Set-Cookie: ${portholeCookie}`].join('\r\n')}\r\n\r\n`;
    };
    out.on('upgrade', (answer, upstreamSocket: Socket, upstreamHead: Buffer) => {
      sockets.add(upstreamSocket);
      upstreamSocket.on('close', () => sockets.delete(upstreamSocket));
      socket.write(headLines('HTTP/1.1 101 Switching Protocols', answer.rawHeaders));
      if (upstreamHead.length > 0) socket.write(upstreamHead);
      upstreamSocket.pipe(socket).pipe(upstreamSocket);
      upstreamSocket.on('error', () => socket.destroy());
      socket.on('close', () => upstreamSocket.destroy());
    });
    out.on('response', (answer) => {
      // A refused upgrade: porthole's answer as it came, its body read to the end.
      const body: Buffer[] = [];
      answer.on('data', (chunk: Buffer) => body.push(chunk));
      answer.on('end', () => {
        const text = Buffer.concat(body);
        const kept: string[] = [];
        for (let i = 0; i < answer.rawHeaders.length; i += 2) {
          const [name, value] = [answer.rawHeaders[i]!, answer.rawHeaders[i + 1]!];
          if (!/^(transfer-encoding|content-length|connection)$/i.test(name)) kept.push(name, value);
        }
        kept.push('Content-Length', String(text.length), 'Connection', 'close');
        socket.end(Buffer.concat([Buffer.from(headLines(`HTTP/1.1 ${answer.statusCode} ${answer.statusMessage}`, kept)), text]));
      });
    });
    out.on('error', () => socket.destroy());
    if (head.length > 0) out.write(head);
    out.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

interface App {
  port: number;
  /** Requests the app served itself (outside the prefix). */
  ownRequests: string[];
  close(): Promise<void>;
}

/** An app's plain node:http server on 127.0.0.1:0 with the proxy mounted; what is not porthole's, it answers 418. */
async function startApp(proxy: PortholeProxy): Promise<App> {
  const ownRequests: string[] = [];
  const sockets = new Set<Duplex>();
  const server: Server = createServer((request, response) => {
    if (proxy.handle(request, response)) return;
    ownRequests.push(`${request.method} ${request.url}`);
    response.writeHead(418, { 'content-type': 'text/plain' }).end('the app’s own');
  });
  server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    if (proxy.upgrade(request, socket, head)) return;
    ownRequests.push(`upgrade ${request.url}`);
    socket.end('HTTP/1.1 418 I am a teapot\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    ownRequests,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

let t: TestServer;
let tap: Tap;
/** No key: the browser's ticket is all porthole gets. */
let plain: App;
/** The app's key, added where `authorize` approves: the person logged in to the app (cookie `app_user=alice`) and the session is theirs. */
let keyed: App;
let appKey: string;
let sessionId: string;
/** A session that is not the logged-in person's (authorize declines it). */
let otherSessionId: string;
const authorized: string[] = [];
let app: ApiClient;

before(async () => {
  t = await startTestServer('sdk-proxy');
  tap = await startTap(t.server.url);
  const created = await fetch(`${t.server.url}/v1/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${testApiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'proxied-app' }),
  });
  assert.equal(created.status, 201, await created.clone().text());
  appKey = ((await created.json()) as { key: string }).key;
  app = new ApiClient(t.server.url, appKey);
  sessionId = (await app.createSession({ userId: 'alice' })).id;
  await t.waitForState(sessionId, ['ready', 'authenticating']);
  otherSessionId = 'ses_00000000000000000000';
  plain = await startApp(createPortholeProxy({ target: tap.origin }));
  keyed = await startApp(
    createPortholeProxy({
      target: tap.origin,
      apiKey: appKey,
      authorize: (request: IncomingMessage, route: ProxiedRoute) => {
        authorized.push(route.path);
        return /(^|;\s*)app_user=alice(;|$)/.test(request.headers.cookie ?? '') && route.kind === 'session-api' && route.sessionId === sessionId;
      },
    }),
  );
});
after(async () => {
  await plain?.close();
  await keyed?.close();
  await tap?.close();
  await t?.stop();
});

/** A fresh viewer ticket for the session (from the app's server, as the app would mint it). */
const ticket = async () => (await app.createTicket(sessionId)).ticket;

interface Answer {
  status: number;
  code: string | null;
  headers: Record<string, string>;
  /** What porthole was sent for this request, if it was sent anything. */
  atPorthole: Seen[];
}

/** One request, written as given, to the app at `port`. */
async function ask(port: number, method: string, path: string, headers: readonly string[] = []): Promise<Answer> {
  const from = tap.seen.length;
  const extra = method === 'POST' || method === 'PUT' || method === 'DELETE' ? ['Content-Length: 0'] : [];
  const response = await rawRequest(port, requestText(method, path, [`Host: 127.0.0.1:${port}`, 'Connection: close', ...extra, ...headers]));
  return { status: response.status, code: codeOf(response), headers: response.headers, atPorthole: tap.seen.slice(from) };
}

function codeOf(response: RawResponse): string | null {
  if (!(response.headers['content-type'] ?? '').includes('json')) return null;
  return (JSON.parse(response.body.toString('utf8') || '{}') as { error?: { code?: string } }).error?.code ?? null;
}

/** An upgrade request for `path`, written as given; the socket of a 101 is handed back open. */
function askUpgrade(port: number, path: string, headers: readonly string[] = [], method = 'GET'): Promise<RawResponse> {
  return rawRequest(
    port,
    requestText(method, path, [
      `Host: 127.0.0.1:${port}`,
      'Connection: Upgrade',
      'Upgrade: websocket',
      'Sec-WebSocket-Version: 13',
      `Sec-WebSocket-Key: ${webSocketKey()}`,
      ...headers,
    ]),
  );
}

const s = () => `/porthole/v1/sessions/${sessionId}`;

describe('what the browser may ask for, without the app’s key', () => {
  test('the viewer’s surface reaches porthole, without the browser’s cookies or Bearer, and porthole’s Set-Cookie does not come back', async () => {
    const browserCredentials = ['Cookie: app_user=alice; porthole_login=stolen', `Authorization: Bearer ${testApiKey}`, 'Proxy-Authorization: Basic eDp5'];
    const cases = [
      { what: 'the viewer page', method: 'GET', path: async () => `${s()}/viewer?ticket=${await ticket()}`, status: 200 },
      { what: 'an asset', method: 'GET', path: async () => '/porthole/assets/viewer.js', status: 200 },
      { what: 'the stylesheet, HEAD', method: 'HEAD', path: async () => '/porthole/assets/porthole.css', status: 200 },
    ];
    for (const c of cases) {
      const path = await c.path();
      const answer = await ask(plain.port, c.method, path, browserCredentials);
      assert.equal(answer.status, c.status, `${c.what}: ${answer.status} ${answer.code}`);
      assert.equal(answer.atPorthole.length, 1, `${c.what} reached porthole once`);
      const [seen] = answer.atPorthole;
      assert.equal(seen!.url, path.slice('/porthole'.length), `${c.what}: the prefix taken off, the rest as sent`);
      assert.equal(seen!.headers.cookie, undefined, `${c.what}: no cookie at porthole`);
      assert.equal(seen!.headers.authorization, undefined, `${c.what}: no Bearer at porthole`);
      assert.equal(seen!.headers['proxy-authorization'], undefined, `${c.what}: no Proxy-Authorization at porthole`);
      assert.equal(answer.headers['set-cookie'], undefined, `${c.what}: porthole's Set-Cookie was dropped`);
    }
    // The tap does add the cookie (so its absence above is the proxy's doing).
    const direct = await fetch(`${tap.origin}/assets/porthole.css`);
    assert.equal(direct.headers.get('set-cookie'), portholeCookie);
  });

  test('the session routes with the viewer’s ticket reach porthole with that ticket and nothing else', async () => {
    const cases = [
      { method: 'GET', path: s(), status: 200 },
      { method: 'GET', path: `${s()}/events`, status: 200 },
      { method: 'GET', path: `${s()}/diagnosis`, status: 200 },
    ];
    for (const c of cases) {
      const value = await ticket();
      const answer = await ask(plain.port, c.method, c.path, [`Authorization: Ticket ${value}`, 'Cookie: app_user=alice']);
      assert.equal(answer.status, c.status, `${c.method} ${c.path}: ${answer.status} ${answer.code}`);
      assert.deepEqual(
        answer.atPorthole.map((seen) => [seen.method, seen.url, seen.headers.authorization, seen.headers.cookie]),
        [[c.method, c.path.replace('/porthole', ''), `Ticket ${value}`, undefined]],
      );
      assert.equal(answer.headers['set-cookie'], undefined);
    }
  });

  test('everything else under the prefix is answered by the proxy (404, or 401 without a ticket) and porthole never sees it', async () => {
    const bearer = [`Authorization: Bearer ${testApiKey}`];
    const id = sessionId;
    // [method, path, status, code]: the browser holding even the admin key gets nothing more.
    const cases: Array<[string, string, number, string]> = [
      ['GET', `/porthole/v1/sessions/${id}/credentials`, 404, 'ROUTE_NOT_FOUND'],
      ['GET', `/porthole/v1/sessions/${id}`, 401, 'TICKET_MISSING'],
      ['DELETE', `/porthole/v1/sessions/${id}`, 401, 'TICKET_MISSING'],
      ['POST', `/porthole/v1/sessions/${id}/ticket`, 401, 'TICKET_MISSING'],
      ['GET', '/porthole/v1/sessions', 404, 'ROUTE_NOT_FOUND'],
      ['POST', '/porthole/v1/sessions', 404, 'ROUTE_NOT_FOUND'],
      ['GET', '/porthole/v1/keys', 404, 'ROUTE_NOT_FOUND'],
      ['POST', '/porthole/v1/keys', 404, 'ROUTE_NOT_FOUND'],
      ['GET', '/porthole/v1/webhooks/deliveries', 404, 'ROUTE_NOT_FOUND'],
      ['GET', '/porthole/v1/events', 404, 'ROUTE_NOT_FOUND'],
      ['GET', '/porthole/v1/openapi.json', 404, 'ROUTE_NOT_FOUND'],
      ['GET', '/porthole/login', 404, 'ROUTE_NOT_FOUND'],
      ['GET', '/porthole/metrics', 404, 'ROUTE_NOT_FOUND'],
      ['GET', '/porthole/', 404, 'ROUTE_NOT_FOUND'],
      ['GET', '/porthole', 404, 'ROUTE_NOT_FOUND'],
      ['GET', '/porthole?x=/v1/keys', 404, 'ROUTE_NOT_FOUND'],
      // The viewer's routes with a method they do not take.
      ['POST', `/porthole/v1/sessions/${id}/viewer`, 404, 'ROUTE_NOT_FOUND'],
      ['DELETE', '/porthole/assets/viewer.js', 404, 'ROUTE_NOT_FOUND'],
      ['PUT', `/porthole/v1/sessions/${id}`, 404, 'ROUTE_NOT_FOUND'],
      ['PATCH', `/porthole/v1/sessions/${id}`, 404, 'ROUTE_NOT_FOUND'],
      ['GET', `/porthole/v1/sessions/${id}/ticket`, 404, 'ROUTE_NOT_FOUND'],
      ['POST', `/porthole/v1/sessions/${id}/events`, 404, 'ROUTE_NOT_FOUND'],
      ['GET', `/porthole/v1/sessions/${id}/vnc`, 404, 'ROUTE_NOT_FOUND'],
      // Dot segments, encoded or not, and doubled slashes: refused as written, never resolved here or there.
      ['GET', `/porthole/v1/sessions/${id}/viewer/../credentials`, 404, 'ROUTE_NOT_FOUND'],
      ['GET', `/porthole/v1/sessions/${id}/viewer/%2e%2e/credentials`, 404, 'ROUTE_NOT_FOUND'],
      ['GET', `/porthole/v1/sessions/${id}/viewer/%2E%2E/credentials`, 404, 'ROUTE_NOT_FOUND'],
      ['GET', `/porthole/v1/sessions/${id}/viewer/..%2fcredentials`, 404, 'ROUTE_NOT_FOUND'],
      ['GET', `/porthole/v1/sessions/${id}/viewer/.%2e/.%2e/.%2e/keys`, 404, 'ROUTE_NOT_FOUND'],
      ['GET', `/porthole/v1/sessions/${id}%2fcredentials`, 404, 'ROUTE_NOT_FOUND'],
      ['GET', `/porthole/v1/sessions/${id}/events/../credentials`, 404, 'ROUTE_NOT_FOUND'],
      ['GET', `/porthole/v1/sessions/${id}/viewer\\..\\credentials`, 404, 'ROUTE_NOT_FOUND'],
      ['GET', `/porthole/v1/sessions/${id}/viewer;/../credentials`, 404, 'ROUTE_NOT_FOUND'],
      ['GET', `/porthole/v1/sessions/${id}/./credentials`, 404, 'ROUTE_NOT_FOUND'],
      ['GET', '/porthole/v1/sessions/../keys', 404, 'ROUTE_NOT_FOUND'],
      ['GET', '/porthole/v1/sessions/%2e%2e/keys', 404, 'ROUTE_NOT_FOUND'],
      ['GET', '/porthole//v1/keys', 404, 'ROUTE_NOT_FOUND'],
      ['GET', `/porthole//v1/sessions/${id}/viewer`, 404, 'ROUTE_NOT_FOUND'],
      ['GET', `/porthole/v1//sessions/${id}/viewer`, 404, 'ROUTE_NOT_FOUND'],
      ['GET', `/porthole/v1/sessions/${id}//credentials`, 404, 'ROUTE_NOT_FOUND'],
      ['GET', '/porthole/assets/../v1/keys', 404, 'ROUTE_NOT_FOUND'],
      ['GET', '/porthole/assets/%2e%2e/v1/keys', 404, 'ROUTE_NOT_FOUND'],
      ['GET', '/porthole/assets/..%2fv1%2fkeys', 404, 'ROUTE_NOT_FOUND'],
      ['GET', '/porthole/assets/.hidden', 404, 'ROUTE_NOT_FOUND'],
      ['GET', '/porthole/assets//viewer.js', 404, 'ROUTE_NOT_FOUND'],
      ['GET', '/porthole/assets/sub/viewer.js', 404, 'ROUTE_NOT_FOUND'],
      ['GET', `/porthole/../porthole/v1/sessions/${id}/credentials`, 404, 'ROUTE_NOT_FOUND'],
      ['GET', `/porthole/V1/sessions/${id}/credentials`, 404, 'ROUTE_NOT_FOUND'],
      ['GET', `/porthole/v1/sessions/${id}/credentials?x=/viewer`, 404, 'ROUTE_NOT_FOUND'],
      ['GET', `/porthole/v1/sessions/${id}/credentials#/viewer`, 404, 'ROUTE_NOT_FOUND'],
    ];
    for (const [method, path, status, code] of cases) {
      const answer = await ask(plain.port, method, path, bearer);
      assert.deepEqual([answer.status, answer.code], [status, code], `${method} ${path}`);
      assert.deepEqual(answer.atPorthole, [], `${method} ${path} never reached porthole`);
    }
  });

  test('outside the prefix the app answers itself; nothing goes to porthole', async () => {
    for (const path of ['/v1/keys', '/portholex/v1/keys', '/Porthole/v1/keys', `/v1/sessions/${sessionId}/viewer`]) {
      const answer = await ask(plain.port, 'GET', path, [`Authorization: Bearer ${testApiKey}`]);
      assert.equal(answer.status, 418, path);
      assert.deepEqual(answer.atPorthole, [], path);
    }
    assert.ok(plain.ownRequests.includes('GET /portholex/v1/keys'));
  });
});

describe('with the app’s key, where authorize approves', () => {
  test('an approved session route goes with the app’s key in place of whatever the browser sent; its cookies stay behind', async () => {
    for (const [method, path] of [
      ['GET', s()],
      ['GET', `${s()}/events`],
      ['GET', `${s()}/diagnosis`],
    ] as const) {
      for (const browserAuth of [[], ['Authorization: Bearer forged-by-the-browser'], ['Authorization: Basic eDp5']]) {
        const answer = await ask(keyed.port, method, path, ['Cookie: app_user=alice; other=1', ...browserAuth]);
        assert.equal(answer.status, 200, `${method} ${path} ${browserAuth.join()}: ${answer.status} ${answer.code}`);
        assert.deepEqual(
          answer.atPorthole.map((seen) => [seen.url, seen.headers.authorization, seen.headers.cookie]),
          [[path.replace('/porthole', ''), `Bearer ${appKey}`, undefined]],
        );
        assert.equal(answer.headers['set-cookie'], undefined);
      }
    }
  });

  test('a ticket goes as it is, without asking authorize and without the key', async () => {
    const value = await ticket();
    const calls = authorized.length;
    const answer = await ask(keyed.port, 'GET', s(), [`Authorization: Ticket ${value}`, 'Cookie: app_user=alice']);
    assert.equal(answer.status, 200);
    assert.deepEqual(
      answer.atPorthole.map((seen) => seen.headers.authorization),
      [`Ticket ${value}`],
    );
    assert.equal(authorized.length, calls, 'authorize was not asked');
  });

  test('not approved (no login, or not this person’s session): 401 and porthole never sees it', async () => {
    const cases: Array<[string, string, readonly string[]]> = [
      ['GET', s(), []],
      ['GET', s(), ['Cookie: app_user=mallory']],
      ['DELETE', s(), ['Authorization: Bearer forged-by-the-browser']],
      ['GET', `/porthole/v1/sessions/${otherSessionId}`, ['Cookie: app_user=alice']],
      ['POST', `/porthole/v1/sessions/${otherSessionId}/ticket`, ['Cookie: app_user=alice']],
    ];
    for (const [method, path, headers] of cases) {
      const answer = await ask(keyed.port, method, path, headers);
      assert.deepEqual([answer.status, answer.code], [401, 'TICKET_MISSING'], `${method} ${path} ${headers.join()}`);
      assert.deepEqual(answer.atPorthole, [], `${method} ${path}`);
    }
  });

  test('credentials, keys and webhooks: 404 however they are written, authorize is not asked, and porthole never sees the key', async () => {
    const calls = authorized.length;
    const id = sessionId;
    for (const path of [
      `/porthole/v1/sessions/${id}/credentials`,
      `/porthole/v1/sessions/${id}/credentials/`,
      `/porthole/v1/sessions/${id}/events/../credentials`,
      `/porthole/v1/sessions/${id}/events/%2e%2e/credentials`,
      `/porthole/v1/sessions/${id}/viewer/../credentials`,
      `/porthole/v1/sessions/${id}%2fcredentials`,
      `/porthole/v1/sessions/${id}//credentials`,
      `/porthole/v1/sessions/${id}/ticket/../../../keys`,
      '/porthole/v1/keys',
      '/porthole/v1/webhooks/deliveries',
      `/porthole/v1/sessions/${id}/webhooks`,
      '/porthole/assets/../v1/keys',
    ]) {
      for (const method of ['GET', 'POST', 'DELETE']) {
        const answer = await ask(keyed.port, method, path, ['Cookie: app_user=alice']);
        assert.deepEqual([answer.status, answer.code], [404, 'ROUTE_NOT_FOUND'], `${method} ${path}`);
        assert.deepEqual(answer.atPorthole, [], `${method} ${path}`);
      }
    }
    assert.equal(authorized.length, calls, 'authorize was never asked about them');
    // Over this whole file, the key went only to the session routes the viewer calls.
    for (const seen of tap.seen.filter((r) => r.headers.authorization === `Bearer ${appKey}`)) {
      assert.match(seen.url, /^\/v1\/sessions\/ses_[0-9a-z]+(\/events|\/diagnosis|\/ticket)?$/, `the key went with ${seen.method} ${seen.url}`);
    }
    assert.ok(
      tap.seen.every((r) => !/credentials|keys|webhooks/.test(r.url)),
      'porthole was never asked for credentials, keys or webhooks',
    );
  });
});

describe('the WebSocket', () => {
  test('the viewer’s socket with its ticket passes the RFB banner; the browser’s cookie and Bearer do not go on, nor porthole’s Set-Cookie back', async () => {
    const from = tap.seen.length;
    const viewer = await connectViewer(`ws://127.0.0.1:${plain.port}/porthole/v1/sessions/${sessionId}/vnc?ticket=${encodeURIComponent(await ticket())}`);
    try {
      assert.ok(viewer.size.width > 0 && viewer.size.height > 0, 'ServerInit came through');
    } finally {
      await closeViewer(viewer);
    }
    assert.deepEqual(
      tap.seen.slice(from).map((seen) => [seen.isUpgrade, seen.url.replace(/ticket=.*/, 'ticket=…')]),
      [[true, `/v1/sessions/${sessionId}/vnc?ticket=…`]],
    );

    // By hand, with the browser's credentials: porthole gets the ticket in the query and nothing else.
    const upgraded = await askUpgrade(plain.port, `${s()}/vnc?ticket=${encodeURIComponent(await ticket())}`, [
      'Cookie: app_user=alice; porthole_login=stolen',
      `Authorization: Bearer ${testApiKey}`,
    ]);
    const socket = upgraded.socket!;
    try {
      assert.equal(upgraded.status, 101);
      assert.equal(upgraded.headers['set-cookie'], undefined, 'porthole’s Set-Cookie on the 101 was dropped');
      const seen = tap.seen.at(-1)!;
      assert.equal(seen.isUpgrade, true);
      assert.equal(seen.headers.cookie, undefined);
      assert.equal(seen.headers.authorization, undefined);
      // The first WebSocket frame carries the RFB banner.
      let received = upgraded.rest;
      socket.on('data', (chunk: Buffer) => (received = Buffer.concat([received, chunk])));
      await until(
        'the RFB banner through the proxy',
        () => received.toString('latin1'),
        (text) => text.includes('RFB 003.008\n'),
        10_000,
      );
    } finally {
      socket.destroy();
    }
  });

  test('a bad ticket is porthole’s to refuse, and its refusal comes back as it was (without its Set-Cookie)', async () => {
    const from = tap.seen.length;
    const refused = await askUpgrade(plain.port, `${s()}/vnc?ticket=not-a-ticket`);
    assert.equal(refused.status, 401);
    assert.equal((JSON.parse(refused.body.toString('utf8')) as { error: { code: string } }).error.code, 'TICKET_INVALID');
    assert.equal(refused.headers['set-cookie'], undefined);
    assert.equal(tap.seen.length, from + 1);
  });

  test('an upgrade to any other path is refused by the proxy with a real HTTP answer, and porthole never sees it', async () => {
    const value = encodeURIComponent(await ticket());
    const id = sessionId;
    const cases: Array<[string, string]> = [
      ['GET', `/porthole/v1/sessions/${id}/viewer?ticket=${value}`],
      ['GET', `/porthole/v1/sessions/${id}/events?ticket=${value}`],
      ['GET', `/porthole/v1/sessions/${id}?ticket=${value}`],
      ['GET', `/porthole/v1/sessions/${id}/vnc/?ticket=${value}`],
      ['GET', `/porthole/v1/sessions/${id}/viewer/../vnc?ticket=${value}`],
      ['GET', `/porthole/v1/sessions/${id}/%76nc?ticket=${value}`],
      ['GET', `/porthole//v1/sessions/${id}/vnc?ticket=${value}`],
      ['GET', `/porthole/assets/../v1/sessions/${id}/vnc?ticket=${value}`],
      ['GET', `/porthole/v1/sessions/${id}/credentials`],
      ['GET', '/porthole/v1/events'],
      ['GET', '/porthole/'],
      ['POST', `/porthole/v1/sessions/${id}/vnc?ticket=${value}`],
    ];
    for (const [method, path] of cases) {
      const from = tap.seen.length;
      const refused = await askUpgrade(plain.port, path, [`Authorization: Bearer ${testApiKey}`], method);
      assert.equal(refused.status, 404, `${method} ${path}`);
      assert.equal((JSON.parse(refused.body.toString('utf8')) as { error: { code: string } }).error.code, 'ROUTE_NOT_FOUND');
      assert.equal(tap.seen.length, from, `${method} ${path} never reached porthole`);
    }
    // The keyed proxy adds nothing to an upgrade either.
    const from = tap.seen.length;
    const upgraded = await askUpgrade(keyed.port, `${s()}/vnc?ticket=${encodeURIComponent(await ticket())}`, ['Cookie: app_user=alice']);
    upgraded.socket?.destroy();
    assert.equal(upgraded.status, 101);
    assert.deepEqual(
      tap.seen.slice(from).map((seen) => seen.headers.authorization),
      [undefined],
    );
  });
});

test('porthole down: 502 PORTHOLE_UNREACHABLE for a page and for the WebSocket', async () => {
  const down = await startApp(createPortholeProxy({ target: `http://127.0.0.1:${await freeLoopbackPort()}` }));
  try {
    const page = await ask(down.port, 'GET', `${s()}/viewer?ticket=x`);
    assert.deepEqual([page.status, page.code], [502, 'PORTHOLE_UNREACHABLE']);
    const socket = await askUpgrade(down.port, `${s()}/vnc?ticket=x`);
    assert.equal(socket.status, 502);
    assert.equal((JSON.parse(socket.body.toString('utf8')) as { error: { code: string } }).error.code, 'PORTHOLE_UNREACHABLE');
  } finally {
    await down.close();
  }
});
