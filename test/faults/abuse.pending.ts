import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { errorRegistry, isErrorCode } from '../../src/protocol/errors.js';
import { newSessionId, type SessionId } from '../../src/protocol/ids.js';
import { rawRequest, requestText, webSocketKey, type RawResponse } from '../support/raw-http.js';
import { startTestServer, testApiKey, type TestServer } from '../support/server.js';

// PENDING: these fail today; the build transpiles this file but `npm test` runs only *.test.js.
// Run it with: node scripts/build.mjs && node --test dist/test/faults/abuse.pending.js
//
// 1. A malformed percent-encoding in the relay's path (GET /v1/sessions/%E0%A4%A/vnc with upgrade
//    headers) answers 500 INTERNAL and logs "upgrade failed" at error level: relay.ts
//    #handleUpgrade calls decodeURIComponent(match[1]) unguarded; the URIError reaches attach()'s
//    catch. Fix: catch it and refuse('ROUTE_NOT_FOUND') (or treat the id as unknown).
// 2. Requests that Fastify or Node answer before porthole's handlers carry no registry code:
//    - a malformed percent-encoding in an HTTP path: 400 {"error":"Bad Request","code":"FST_ERR_BAD_URL",…}
//      (Fastify's router; fix: Fastify's `frameworkErrors` option in src/server/http/app.ts);
//    - what Node's parser rejects — headers over 16 KiB (431), a malformed request line, an unknown
//      method, conflicting Content-Length, Transfer-Encoding with Content-Length: Fastify's default
//      clientErrorHandler writes {"error":"Bad Request","message":"Client Error","statusCode":400}
//      (fix: `clientErrorHandler` in app.ts writing {error: {code, message}}, e.g. VALIDATION_FAILED
//      for 400 and a new HEADERS_TOO_LARGE (431) in src/protocol/errors.ts and docs/errors.md);
//    - no Host header: Node answers 400 with an empty body (requireHostHeader);
//    - `Expect: <anything but 100-continue>`: Node answers 417 with an empty body (fix: a
//      'checkExpectation' listener on the server that answers with a registry code).
// 3. Upgrades that ws itself refuses (bad Sec-WebSocket-Key, a version other than 8/13, Upgrade
//    other than "websocket") get ws's 400 with a text/html body: relay.ts never listens to ws's
//    'wsClientError'. Fix: `this.#wss.on('wsClientError', (error, socket) => refuseUpgrade(socket,
//    'VALIDATION_FAILED', …))`, keeping ws's `Sec-WebSocket-Version: 13, 8` header for the version case.
// 4. A ticket's MAC is compared after Buffer.from(…, 'base64url'), which skips characters outside
//    the alphabet and ignores the unused low bits of the last character: other spellings of a
//    valid ticket verify too (src/server/tickets.ts open()). Harmless while tickets are plain
//    bearer tokens, but any future revocation or replay list keyed on the ticket string could be
//    sidestepped. Fix: compare the base64url strings (timingSafeEqual on mac(body) vs parts[4]).

let t: TestServer;
let port: number;
const phantomId = newSessionId();

before(async () => {
  t = await startTestServer('faults-abuse-pending', { PORTHOLE_MAX_SESSIONS: '1' });
  port = Number(new URL(t.server.url).port);
});
after(() => t?.stop());

function assertRegistryBody(where: string, response: RawResponse): void {
  const text = response.body.toString();
  assert.ok(response.status >= 400 && response.status < 500, `${where} → ${response.status} ${text.slice(0, 200)}`);
  let code: unknown;
  try {
    code = (JSON.parse(text) as { error?: { code?: unknown } }).error?.code;
  } catch {
    assert.fail(`${where} → ${response.status} with a body that is not JSON: ${JSON.stringify(text.slice(0, 200))}`);
  }
  assert.ok(isErrorCode(code), `${where} → ${response.status} without a registry code: ${text.slice(0, 200)}`);
  assert.equal(errorRegistry[code].status, response.status);
}

const host = () => `Host: 127.0.0.1:${port}`;
const upgrade = () => ['Connection: Upgrade', 'Upgrade: websocket', 'Sec-WebSocket-Version: 13', `Sec-WebSocket-Key: ${webSocketKey()}`];

test('relay: a malformed percent-encoding in the path is a 4xx with a registry code, not 500', async () => {
  const ticket = encodeURIComponent(t.server.tickets.issue(phantomId).ticket);
  for (const id of ['%E0%A4%A', '%ZZ', '%', 'ses_%C0']) {
    assertRegistryBody(`upgrade /v1/sessions/${id}/vnc`, await rawRequest(port, requestText('GET', `/v1/sessions/${id}/vnc?ticket=${ticket}`, [host(), ...upgrade()])));
  }
});

test('HTTP: a malformed percent-encoding in the path has a registry code', async () => {
  for (const path of ['/v1/sessions/%E0%A4%A', '/v1/sessions/%ZZ/events', '/%']) {
    assertRegistryBody(`GET ${path}`, await rawRequest(port, requestText('GET', path, [host(), `Authorization: Bearer ${testApiKey}`, 'Connection: close'])));
  }
});

test('requests Node’s parser refuses have a registry code', async () => {
  const big = Array.from({ length: 2_000 }, (_, i) => `x-header-${i}: v`);
  const cases: Array<[string, string]> = [
    ['2,000 long headers (431)', requestText('GET', '/v1/sessions', [host(), ...big, 'Connection: close'])],
    ['a space in the path', requestText('GET', '/v1/ses sions', [host(), 'Connection: close'])],
    ['an unknown method', requestText('BREW', '/v1/sessions', [host(), 'Connection: close'])],
    ['two Content-Lengths', requestText('POST', '/v1/sessions', [host(), 'Content-Type: application/json', 'Content-Length: 2', 'Content-Length: 3', 'Connection: close'], '{}')],
    ['Transfer-Encoding with Content-Length', requestText('POST', '/v1/sessions', [host(), 'Content-Type: application/json', 'Transfer-Encoding: chunked', 'Content-Length: 2', 'Connection: close'], '{}')],
    ['a header without a colon', requestText('GET', '/healthz', [host(), 'no colon here', 'Connection: close'])],
    ['no Host header', requestText('GET', '/v1/sessions', [`Authorization: Bearer ${testApiKey}`, 'Connection: close'])],
    ['Expect: something', requestText('GET', '/v1/sessions', [host(), 'Expect: something', 'Connection: close'])],
  ];
  const failures: string[] = [];
  for (const [what, request] of cases) {
    try {
      assertRegistryBody(what, await rawRequest(port, request));
    } catch (error) {
      failures.push((error as Error).message.split('\n')[0]!);
    }
  }
  assert.deepEqual(failures, []);
});

test('upgrades ws refuses have a registry code', async () => {
  const path = `/v1/sessions/${phantomId}/vnc?ticket=${encodeURIComponent(t.server.tickets.issue(phantomId).ticket)}`;
  const cases: Array<[string, string[]]> = [
    ['bad Sec-WebSocket-Key', ['Connection: Upgrade', 'Upgrade: websocket', 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: bad']],
    ['no Sec-WebSocket-Key', ['Connection: Upgrade', 'Upgrade: websocket', 'Sec-WebSocket-Version: 13']],
    ['Sec-WebSocket-Version 7', ['Connection: Upgrade', 'Upgrade: websocket', 'Sec-WebSocket-Version: 7', `Sec-WebSocket-Key: ${webSocketKey()}`]],
    ['Upgrade: h2c', ['Connection: Upgrade', 'Upgrade: h2c', 'Sec-WebSocket-Version: 13', `Sec-WebSocket-Key: ${webSocketKey()}`]],
  ];
  const failures: string[] = [];
  for (const [what, headers] of cases) {
    try {
      assertRegistryBody(what, await rawRequest(port, requestText('GET', path, [host(), ...headers])));
    } catch (error) {
      failures.push((error as Error).message.split('\n')[0]!);
    }
  }
  assert.deepEqual(failures, []);
});

test('only the canonical spelling of a ticket verifies', async () => {
  const ticket = t.server.tickets.issue(phantomId as SessionId).ticket;
  const mac = ticket.slice(ticket.lastIndexOf('.') + 1);
  const body = ticket.slice(0, ticket.lastIndexOf('.') + 1);
  // 32 bytes are 43 base64url characters: the last one carries 2 unused bits.
  const last = mac.at(-1)!;
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const sibling = alphabet[alphabet.indexOf(last) ^ 1]!;
  for (const spelling of [`${body}${mac.slice(0, 10)}*${mac.slice(10)}`, `${body}${mac.slice(0, -1)}${sibling}`, `${body}${mac}=`]) {
    assert.throws(() => t.server.tickets.verify(spelling, phantomId), { code: 'TICKET_INVALID' }, spelling);
  }
});
