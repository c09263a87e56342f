import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { errorRegistry, isErrorCode } from '../../src/protocol/errors.js';
import { newSessionId, type SessionId } from '../../src/protocol/ids.js';
import { providerNames, type Session } from '../../src/protocol/session.js';
import { createTicketSigner } from '../../src/server/tickets.js';
import { freshViewerUrl } from '../support/faults.js';
import { encodeFrame, frameReader, opcodes, rawRequest, requestText, webSocketKey, type FrameSpec, type RawResponse } from '../support/raw-http.js';
import { openFdCount } from '../support/sandbox-processes.js';
import { untilDefined } from '../support/until.js';
import { startTestServer, testApiKey, type TestServer } from '../support/server.js';
import { closeViewer, connectViewer, expectFramebufferUpdate, openViewerSocket, viewerSocketUrl } from '../support/ws.js';

// Property-based abuse of the HTTP API and the relay, against a real server with one real
// session: random JSON bodies, paths, ids, headers (random, duplicated, 2,000 of them), oversized
// bodies, broken WebSocket upgrades, oversized and malformed frames, replayed and foreign tickets.
// Invariants: no 5xx, no crash (/healthz answers, the session lives on), every error body names a
// registry code whose status is the response's, the relay lets go of every connection.
//
// Inputs that Node's HTTP parser, Fastify's router or ws refuse before porthole's handlers (431,
// bad request lines, conflicting lengths, no Host, an odd Expect, malformed percent-encodings,
// ws's own 400s) get a registry code too (src/server/http/client-errors.ts, the relay's
// wsClientError listener).
//
// Xvnc (TigerVNC) may black-mark clients that leave before the RFB handshake (cycles.pending.ts),
// so every upgrade that could succeed either completes the handshake or targets a session id that
// does not exist (the relay then closes 4404 without touching Xvnc).

let t: TestServer;
let session: Session;
let port: number;
let fdsBefore: number;
const statuses = new Map<number, number>();

before(async () => {
  // One session slot, taken: a valid POST /v1/sessions gets 429 instead of booting sandboxes.
  t = await startTestServer('faults-abuse', { PORTHOLE_MAX_SESSIONS: '1', PORTHOLE_LOG_LEVEL: 'info' });
  session = await t.readySession();
  port = Number(new URL(t.server.url).port);
  fdsBefore = await openFdCount('self');
});
after(() => t?.stop());

const runs = (numRuns: number) => ({ numRuns });
const hostLine = () => `Host: 127.0.0.1:${port}`;
const bearerLine = `Authorization: Bearer ${testApiKey}`;
/** A session id nobody has: an upgrade that gets through is closed 4404 and never reaches a sandbox. */
const phantomId = newSessionId();

function count(status: number): void {
  statuses.set(status, (statuses.get(status) ?? 0) + 1);
}

/** No 5xx; an error has a JSON body `{error: {code}}` with a registry code of that very status. */
function assertHandled(where: string, status: number, body: Buffer | string, method = 'GET'): void {
  count(status);
  const text = body.toString();
  assert.ok(status < 500, `${where} → ${status} ${text.slice(0, 300)}`);
  if (status < 400 || method === 'HEAD') return;
  let code: unknown;
  try {
    code = (JSON.parse(text) as { error?: { code?: unknown } }).error?.code;
  } catch {
    assert.fail(`${where} → ${status} with a body that is not JSON: ${JSON.stringify(text.slice(0, 200))}`);
  }
  assert.ok(isErrorCode(code), `${where} → ${status} without a registry code: ${text.slice(0, 300)}`);
  assert.equal(errorRegistry[code].status, status, `${where}: ${code} is a ${errorRegistry[code].status}, answered ${status}`);
}

async function post(path: string, body: string | Buffer, headers: string[] = [`Content-Type: application/json`]): Promise<RawResponse> {
  const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body);
  const head = requestText('POST', path, [hostLine(), bearerLine, ...headers, `Content-Length: ${bytes.length}`, 'Connection: close']);
  return rawRequest(port, Buffer.concat([Buffer.from(head, 'latin1'), bytes]));
}

// ---- arbitraries ----

const visibleAscii = fc.constantFrom(...Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)), '\t');
const headerValue = fc.string({ unit: visibleAscii, maxLength: 80 }).map((s) => s.trim());
const tokenChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~";
const headerToken = fc.string({ unit: fc.constantFrom(...tokenChars), minLength: 1, maxLength: 24 });
/** Names that mean something to porthole or to HTTP, often repeated; the framing ones are excluded (see the top). */
const headerName = fc
  .oneof(
    {
      weight: 3,
      arbitrary: fc.constantFrom(
        'authorization',
        'content-type',
        'host',
        'origin',
        'cookie',
        'accept',
        'x-forwarded-for',
        'x-forwarded-proto',
        'x-forwarded-host',
        'x-request-id',
        'user-agent',
        'referer',
        'accept-encoding',
        'connection',
        'upgrade',
        'sec-websocket-key',
        'sec-websocket-version',
        'range',
        'if-none-match',
        'te',
        'keep-alive',
        'authorization',
      ),
    },
    { weight: 1, arbitrary: headerToken },
  )
  .filter((name) => !['content-length', 'transfer-encoding', 'expect'].includes(name.toLowerCase()));
const pathSegment = fc.oneof(
  fc.constantFrom(
    'v1',
    'sessions',
    'vnc',
    'events',
    'ticket',
    'viewer',
    'assets',
    'healthz',
    'metrics',
    'login',
    'openapi.json',
    '..',
    '.',
    '',
    'dashboard.js',
    'ses_',
  ),
  fc.stringMatching(/^ses_[0-9a-z]{20}$/),
  fc.string({ unit: 'grapheme', maxLength: 24 }).map(encodeURIComponent),
);
const randomPath = fc.array(pathSegment, { maxLength: 6 }).map((segments) => `/${segments.join('/')}`);
const randomQuery = fc.option(
  fc
    .dictionary(fc.constantFrom('limit', 'state', 'after', 'ticket', 'token', 'x'), fc.string({ unit: 'grapheme', maxLength: 12 }), { maxKeys: 3 })
    .map((d) => `?${new URLSearchParams(d).toString()}`),
  { nil: '' },
);
const createBody = fc.record(
  { provider: fc.oneof(fc.constantFrom(...providerNames), fc.string({ maxLength: 80 })), userId: fc.string({ maxLength: 250 }) },
  { requiredKeys: [] },
);

// ---- HTTP ----

test('random JSON bodies to POST /v1/sessions: 4xx with a registry code, never a session', async () => {
  await fc.assert(
    fc.asyncProperty(fc.oneof(fc.jsonValue({ maxDepth: 4 }), createBody, fc.record({ provider: fc.constantFrom(...providerNames) })), async (value) => {
      const response = await post('/v1/sessions', JSON.stringify(value));
      assertHandled(`POST /v1/sessions ${JSON.stringify(value).slice(0, 120)}`, response.status, response.body, 'POST');
      assert.ok(response.status === 400 || response.status === 429, `status ${response.status}`);
    }),
    runs(200),
  );
});

test('random bytes under random content types: 4xx with a registry code', async () => {
  const contentType = fc.oneof(
    fc.constantFrom(
      'application/json',
      'application/json; charset=utf-8',
      'APPLICATION/JSON',
      'application/json; charset=latin1',
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/octet-stream',
      'application/jsonx',
    ),
    headerValue,
  );
  const body = fc.oneof(
    fc.uint8Array({ maxLength: 2_000 }).map((b) => Buffer.from(b)),
    fc.string({ maxLength: 500 }).map((s) => Buffer.from(s)),
  );
  await fc.assert(
    fc.asyncProperty(
      contentType,
      body,
      fc.constantFrom('/v1/sessions', `/v1/sessions/${phantomId}/ticket`, `/v1/sessions/${session.id}/ticket`),
      async (type, bytes, path) => {
        const response = await post(path, bytes, type === '' ? [] : [`Content-Type: ${type}`]);
        assertHandled(`POST ${path} (${type}, ${bytes.length} bytes)`, response.status, response.body, 'POST');
        if (path === '/v1/sessions') assert.notEqual(response.status, 201);
      },
    ),
    runs(120),
  );
});

test('random paths, ids, queries, methods and credentials: no 5xx, registry codes', async () => {
  const own = t.server.tickets.issue(session.id as SessionId).ticket;
  const credentials = fc.constantFrom<string[]>(
    [],
    [bearerLine],
    ['Authorization: Bearer not-a-key'],
    ['Authorization: Ticket vt.x.y.z.w'],
    [`Authorization: Ticket ${own}`],
    ['Authorization: Basic YTpi'],
    ['Cookie: porthole_login=dash.admin.1.x.y'],
  );
  const method = fc.constantFrom('GET', 'POST', 'DELETE', 'PUT', 'PATCH', 'OPTIONS', 'HEAD');
  await fc.assert(
    fc.asyncProperty(method, randomPath, randomQuery, credentials, async (verb, path, query, auth) => {
      // Only this test's own session must not be ended; random ids never name it.
      fc.pre(!(verb === 'DELETE' && path.includes(session.id)));
      const response = await rawRequest(port, requestText(verb, `${path}${query}`, [hostLine(), ...auth, 'Connection: close']));
      assertHandled(`${verb} ${path}${query} [${auth.join()}]`, response.status, response.body, verb);
    }),
    runs(400),
  );
});

test('random and duplicated headers: no 5xx, registry codes', async () => {
  const routes = fc.constantFrom<[string, string, string?]>(
    ['GET', '/v1/sessions'],
    ['POST', '/v1/sessions', '{}'],
    ['GET', `/v1/sessions/${session.id}`],
    ['GET', '/healthz'],
    ['POST', `/v1/sessions/${session.id}/ticket`],
    ['GET', `/v1/sessions/${phantomId}/events`],
  );
  const headers = fc.array(fc.tuple(headerName, headerValue), { maxLength: 40 });
  await fc.assert(
    fc.asyncProperty(routes, headers, fc.boolean(), fc.boolean(), async ([verb, path, body], pairs, withKey, twice) => {
      const lines = pairs.map(([name, value]) => `${name}: ${value}`);
      const bodyLines = body === undefined ? [] : ['Content-Type: application/json', `Content-Length: ${body.length}`];
      const head = [hostLine(), ...(withKey ? [bearerLine] : []), ...bodyLines, ...lines, ...(twice ? lines : []), 'Connection: close'];
      const response = await rawRequest(port, requestText(verb, path, head, body ?? ''));
      assertHandled(`${verb} ${path} with ${head.length} headers`, response.status, response.body, verb);
    }),
    runs(200),
  );
});

test('2,000 headers on one request: answered like any other when they fit the header limit; refused (4xx) when not', async () => {
  const small = Array.from({ length: 2_000 }, (_, i) => `${i.toString(36)}:v`); // ≈ 12 KiB
  const list = await rawRequest(port, requestText('GET', '/v1/sessions', [hostLine(), bearerLine, ...small, 'Connection: close']));
  assertHandled('GET /v1/sessions + 2,000 headers', list.status, list.body);
  assert.equal(list.status, 200);
  const create = await post('/v1/sessions', '{}', ['Content-Type: application/json', ...small]);
  assertHandled('POST /v1/sessions + 2,000 headers', create.status, create.body, 'POST');
  assert.equal(create.status, 429);
  const repeated = await rawRequest(
    port,
    requestText('GET', `/v1/sessions/${session.id}`, [hostLine(), bearerLine, ...Array.from({ length: 2_000 }, () => 'a:1'), 'Connection: close']),
  );
  assertHandled('one header 2,000 times', repeated.status, repeated.body);
  assert.equal(repeated.status, 200);
  // An upgrade with 2,000 headers, to a session nobody has: upgraded, then closed 4404.
  const upgrade = await rawRequest(
    port,
    requestText('GET', `/v1/sessions/${phantomId}/vnc?ticket=${encodeURIComponent(t.server.tickets.issue(phantomId).ticket)}`, [
      hostLine(),
      'Connection: Upgrade',
      'Upgrade: websocket',
      'Sec-WebSocket-Version: 13',
      `Sec-WebSocket-Key: ${webSocketKey()}`,
      ...small,
    ]),
  );
  assert.equal(upgrade.status, 101);
  const close = await frameReader(upgrade.socket!, upgrade.rest).closeFrame();
  upgrade.socket!.destroy();
  assert.deepEqual(close, { code: 4404, reason: 'SESSION_NOT_FOUND' });

  // ≈ 26 KiB of headers: over Node's 16 KiB limit, refused by the parser before porthole sees it.
  const big = Array.from({ length: 2_000 }, (_, i) => `x-header-${i}: v`);
  for (const [verb, path] of [
    ['GET', '/v1/sessions'],
    ['GET', `/v1/sessions/${phantomId}/vnc`],
  ] as const) {
    const refused = await rawRequest(port, requestText(verb, path, [hostLine(), bearerLine, ...big, 'Connection: close']));
    assertHandled(`${path} + 2,000 long headers`, refused.status, refused.body);
    assert.equal(refused.status, 431);
  }
});

test('oversized bodies: 413 BODY_TOO_LARGE, declared or streamed', async () => {
  const limit = t.server.config.bodyLimitBytes;
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: limit + 1, max: 4 * 1024 * 1024 }), async (size) => {
      const body = `{"userId":"${'x'.repeat(size - 13)}"}`;
      const response = await post('/v1/sessions', body);
      assertHandled(`POST /v1/sessions with ${size} bytes`, response.status, response.body, 'POST');
      assert.equal(response.status, 413);
    }),
    runs(8),
  );
  // Announced as 10 GB and never sent: refused from the header alone, at once.
  const declared = await rawRequest(
    port,
    requestText('POST', '/v1/sessions', [hostLine(), bearerLine, 'Content-Type: application/json', 'Content-Length: 10000000000', 'Connection: close'], '{'),
    { timeoutMs: 3_000 },
  );
  assertHandled('Content-Length: 10 GB', declared.status, declared.body, 'POST');
  assert.equal(declared.status, 413);
  // Chunked, no length announced: counted while it streams.
  const chunk = 'x'.repeat(32 * 1024);
  const chunks = Array.from({ length: 4 }, () => `${chunk.length.toString(16)}\r\n${chunk}\r\n`).join('');
  const streamed = await rawRequest(
    port,
    requestText(
      'POST',
      '/v1/sessions',
      [hostLine(), bearerLine, 'Content-Type: application/json', 'Transfer-Encoding: chunked', 'Connection: close'],
      `${chunks}0\r\n\r\n`,
    ),
  );
  assertHandled('chunked 128 KiB', streamed.status, streamed.body, 'POST');
  assert.equal(streamed.status, 413);
  // Deep nesting within the limit: parsed without blowing the stack, refused by the schema.
  const deep = `{"provider":${'['.repeat(30_000)}${']'.repeat(30_000)}}`;
  const nested = await post('/v1/sessions', deep);
  assertHandled('30,000-deep JSON', nested.status, nested.body, 'POST');
  assert.equal(nested.status, 400);
});

// ---- WebSocket upgrades ----

const upgradeHeaders = (overrides: Record<string, string | null> = {}): string[] => {
  const base: Record<string, string | null> = {
    Connection: 'Upgrade',
    Upgrade: 'websocket',
    'Sec-WebSocket-Version': '13',
    'Sec-WebSocket-Key': webSocketKey(),
    ...overrides,
  };
  return [hostLine(), ...Object.entries(base).flatMap(([name, value]) => (value === null ? [] : [`${name}: ${value}`]))];
};
const vncPath = (id: string, ticket: string | null) => `/v1/sessions/${id}/vnc${ticket === null ? '' : `?ticket=${encodeURIComponent(ticket)}`}`;

test('upgrades refused before the upgrade: a real HTTP status and a registry code', async () => {
  const key = await readFile(join(t.dataDir, 'signing.key'));
  const valid = () => t.server.tickets.issue(phantomId).ticket;
  const cases = fc.oneof(
    fc.constant({ what: 'no ticket', path: vncPath(phantomId, null), headers: {}, status: 401 }),
    fc
      .string({ unit: visibleAscii, minLength: 1, maxLength: 120 })
      .map((tk) => ({ what: `ticket ${tk}`, path: vncPath(phantomId, tk), headers: {}, status: 401 })),
    fc
      .constant(null)
      .map(() => ({ what: 'expired', path: vncPath(phantomId, createTicketSigner(key, -1_000).issue(phantomId).ticket), headers: {}, status: 401 })),
    fc.uint8Array({ minLength: 32, maxLength: 32 }).map((k) => ({
      what: 'foreign key',
      path: vncPath(phantomId, createTicketSigner(Buffer.from(k), 60_000).issue(phantomId).ticket),
      headers: {},
      status: 401,
    })),
    fc.constant(null).map(() => ({
      what: 'another session’s ticket',
      path: vncPath(phantomId, t.server.tickets.issue(session.id as SessionId).ticket),
      headers: {},
      status: 403,
    })),
    headerValue
      .filter((o) => o !== '' && o !== `http://127.0.0.1:${port}`)
      .map((origin) => ({ what: `Origin ${origin}`, path: vncPath(phantomId, valid()), headers: { Origin: origin }, status: 403 })),
    fc
      .array(pathSegment, { minLength: 1, maxLength: 3 })
      .map((s) => ({ what: 'wrong route', path: `/v1/sessions/${phantomId}/${s.join('/')}x?ticket=${encodeURIComponent(valid())}`, headers: {}, status: 404 })),
    fc.constant(null).map(() => ({ what: 'no Upgrade header (plain GET)', path: vncPath(phantomId, valid()), headers: { Upgrade: null }, status: 404 })),
  );
  await fc.assert(
    fc.asyncProperty(cases, fc.constantFrom('GET', 'POST'), async (c, verb) => {
      const response = await rawRequest(port, requestText(verb, c.path, upgradeHeaders(c.headers as Record<string, string | null>)));
      assertHandled(`${verb} upgrade, ${c.what}`, response.status, response.body, verb);
      // A POST never upgrades: it is not the relay's route (404), or the ticket fails first.
      if (verb === 'GET') assert.equal(response.status, c.status, c.what);
      else assert.ok(response.status === 404 || response.status === c.status, `${c.what}: ${response.status}`);
    }),
    runs(150),
  );
  assert.deepEqual(t.server.relay.stats(), []);
});

test('upgrades ws itself refuses (bad key, wrong version, not "websocket"): 400, no 5xx, nothing upgraded', async () => {
  const badKey = fc
    .oneof(fc.string({ unit: visibleAscii, maxLength: 40 }), fc.base64String({ maxLength: 40 }))
    .filter((k) => !/^[A-Za-z0-9+/]{22}==$/.test(k.trim()));
  // ws reads the version with unary plus: '08', '0x8' and '1.3e1' are versions it accepts.
  const badVersion = fc.oneof(fc.integer({ min: -5, max: 300 }).map(String), headerToken).filter((v) => +v.trim() !== 8 && +v.trim() !== 13);
  const badUpgrade = headerToken.filter((u) => u.toLowerCase() !== 'websocket');
  const cases = fc.oneof(
    badKey.map((k) => ({ 'Sec-WebSocket-Key': k })),
    fc.constant({ 'Sec-WebSocket-Key': null }),
    badVersion.map((v) => ({ 'Sec-WebSocket-Version': v })),
    fc.constant({ 'Sec-WebSocket-Version': null }),
    badUpgrade.map((u) => ({ Upgrade: u })),
  );
  await fc.assert(
    fc.asyncProperty(cases, async (overrides) => {
      const response = await rawRequest(port, requestText('GET', vncPath(phantomId, t.server.tickets.issue(phantomId).ticket), upgradeHeaders(overrides)));
      assertHandled(`upgrade ${JSON.stringify(overrides)}`, response.status, response.body);
      assert.equal(response.status, 400, JSON.stringify(overrides));
      if ('Sec-WebSocket-Version' in overrides) assert.equal(response.headers['sec-websocket-version'], '13, 8', 'the versions ws speaks');
    }),
    runs(100),
  );
  assert.deepEqual(t.server.relay.stats(), []);
});

// ---- frames after a valid upgrade ----

/** A raw upgrade to the real session and the RFB handshake over hand-made frames (so Xvnc does not black-mark us). */
async function rawViewer() {
  const response = await rawRequest(port, requestText('GET', vncPath(session.id, t.server.tickets.issue(session.id as SessionId).ticket), upgradeHeaders()));
  assert.equal(response.status, 101, response.body.toString());
  const socket = response.socket!;
  socket.on('error', () => {});
  const frames = frameReader(socket, response.rest);
  const send = (payload: Buffer | string) => socket.write(encodeFrame({ opcode: opcodes.binary, payload: Buffer.from(payload) }));
  assert.equal((await frames.readData(12)).toString(), 'RFB 003.008\n');
  send('RFB 003.008\n');
  const count = (await frames.readData(1))[0]!;
  assert.ok([...(await frames.readData(count))].includes(1), 'security type None');
  send(Buffer.from([1]));
  assert.equal((await frames.readData(4)).readUInt32BE(0), 0, 'security result OK');
  send(Buffer.from([1])); // ClientInit, shared
  const init = await frames.readData(24);
  await frames.readData(init.readUInt32BE(20));
  return { socket, frames };
}

async function relayLetsGo(): Promise<void> {
  await untilDefined('the relay lets go of the connection', async () => (t.server.relay.stats().length === 0 ? true : undefined), 5_000, {
    intervalMs: 50,
    canProbeFail: true,
  });
}

test('malformed frames after a valid upgrade: the RFC 6455 close code, the relay lets go, the session lives on', async (tc) => {
  const cases: Array<{ what: string; frames: FrameSpec[]; code: number }> = [
    { what: 'unmasked frame', frames: [{ opcode: opcodes.binary, payload: Buffer.from('abc'), masked: false }], code: 1002 },
    { what: 'RSV1 without an extension', frames: [{ opcode: opcodes.binary, payload: Buffer.from('abc'), rsv: 4 }], code: 1002 },
    { what: 'RSV3', frames: [{ opcode: opcodes.binary, payload: Buffer.from('abc'), rsv: 1 }], code: 1002 },
    { what: 'reserved data opcode 0x3', frames: [{ opcode: 0x3 }], code: 1002 },
    { what: 'reserved control opcode 0xB', frames: [{ opcode: 0xb }], code: 1002 },
    { what: 'ping with a 126-byte payload', frames: [{ opcode: opcodes.ping, payload: Buffer.alloc(126) }], code: 1002 },
    { what: 'fragmented ping', frames: [{ opcode: opcodes.ping, fin: false }], code: 1002 },
    { what: 'continuation with nothing to continue', frames: [{ opcode: opcodes.continuation, payload: Buffer.from('abc') }], code: 1002 },
    {
      what: 'new message inside a fragmented one',
      frames: [
        { opcode: opcodes.binary, fin: false, payload: Buffer.from('a') },
        { opcode: opcodes.binary, payload: Buffer.from('b') },
      ],
      code: 1002,
    },
    { what: 'text that is not UTF-8', frames: [{ opcode: opcodes.text, payload: Buffer.from([0xc3, 0x28, 0xff]) }], code: 1007 },
    { what: 'close with a 1-byte payload', frames: [{ opcode: opcodes.close, payload: Buffer.from([3]) }], code: 1002 },
    { what: 'close with code 1005', frames: [{ opcode: opcodes.close, payload: Buffer.from([0x03, 0xed]) }], code: 1002 },
    { what: 'close with code 999', frames: [{ opcode: opcodes.close, payload: Buffer.from([0x03, 0xe7]) }], code: 1002 },
    { what: 'close whose reason is not UTF-8', frames: [{ opcode: opcodes.close, payload: Buffer.from([0x03, 0xe8, 0xff, 0xfe]) }], code: 1007 },
    { what: 'length over the 1 MiB maxPayload, announced', frames: [{ opcode: opcodes.binary, declaredLength: 2n * 1024n * 1024n }], code: 1009 },
    { what: '64-bit length with its top bit set', frames: [{ opcode: opcodes.binary, declaredLength: 1n << 63n }], code: 1009 },
  ];
  const seen: string[] = [];
  for (const c of cases) {
    const { socket, frames } = await rawViewer();
    for (const frame of c.frames) socket.write(encodeFrame(frame));
    const close = await frames.closeFrame();
    socket.destroy();
    assert.ok(close, `${c.what}: the server sent a close frame`);
    seen.push(`${c.what} → ${close.code}`);
    assert.equal(close.code, c.code, `${c.what}: closed ${close.code} ${close.reason}`);
    await relayLetsGo();
  }
  tc.diagnostic(seen.join('; '));
  await t.waitForState(session.id, ['ready'], 5_000);
});

test('random bytes after a valid upgrade and handshake: a close with a known code or nothing, never a crash', async () => {
  // Protocol errors (1002, 1007, 1009), 4502 when the bytes reached Xvnc as RFB and it hung up, or
  // the echo of a close frame the bytes happened to contain. Never 1005/1006.
  const isKnown = (code: number) => (code >= 1000 && code <= 1014 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 64 }), async (bytes) => {
      const { socket, frames } = await rawViewer();
      socket.write(Buffer.from(bytes));
      // A partial frame just waits for more; give the server a moment to say something.
      const close = await frames.closeFrame(300).catch(() => null);
      socket.destroy();
      if (close) assert.ok(isKnown(close.code), `closed ${close.code} ${close.reason} after ${Buffer.from(bytes).toString('hex')}`);
      await relayLetsGo();
    }),
    runs(25),
  );
  // Whatever reached Xvnc, the desktop still answers a viewer (restarted by the agent if it had to be).
  const viewer = await untilDefined('a viewer gets RFB', () => connectViewer(freshViewerUrl(t, session.id)), 20_000, { intervalMs: 200, canProbeFail: true });
  await expectFramebufferUpdate(viewer);
  await closeViewer(viewer);
});

test('a message over 1 MiB (the relay’s maxPayload) closes 1009; one just under it goes through', async () => {
  const viewer = await connectViewer(freshViewerUrl(t, session.id));
  // 174,762 RFB PointerEvents at (0, 0), no button: 1,048,572 bytes, harmless to the desktop.
  const pointer = Buffer.from([5, 0, 0, 0, 0, 0]);
  viewer.ws.send(Buffer.concat(Array.from({ length: Math.floor((1024 * 1024) / pointer.length) }, () => pointer)));
  await expectFramebufferUpdate(viewer, 20_000);
  viewer.ws.send(Buffer.alloc(1024 * 1024 + 1));
  const closed = await viewer.closed;
  assert.equal(closed.code, 1009, `closed ${closed.code} ${closed.reason}`);
  await relayLetsGo();
  const again = await connectViewer(freshViewerUrl(t, session.id));
  await expectFramebufferUpdate(again);
  await closeViewer(again);
});

// ---- tickets ----

test('replayed tickets work until they expire (bearer tokens, by design); foreign and tampered ones never', async () => {
  const ticket = t.server.tickets.issue(session.id as SessionId).ticket;
  for (let i = 0; i < 10; i++) {
    const viewer = await connectViewer(viewerSocketUrl(t.server.url, session.id, ticket));
    await closeViewer(viewer);
    const read = await rawRequest(port, requestText('GET', `/v1/sessions/${session.id}`, [hostLine(), `Authorization: Ticket ${ticket}`, 'Connection: close']));
    assert.equal(read.status, 200);
  }
  await relayLetsGo();

  const valid = t.server.tickets.issue(phantomId).ticket;
  const bodyLength = valid.lastIndexOf('.');
  const tampered = fc
    .tuple(fc.nat({ max: bodyLength - 1 }), fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789-_.'))
    .map(([at, ch]) => valid.slice(0, at) + ch + valid.slice(at + 1))
    .filter((tk) => tk !== valid);
  const foreign = fc.uint8Array({ minLength: 16, maxLength: 64 }).map((k) => createTicketSigner(Buffer.from(k), 60_000).issue(phantomId).ticket);
  const garbage = fc.string({ unit: visibleAscii, minLength: 1, maxLength: 300 });
  await fc.assert(
    fc.asyncProperty(fc.oneof(tampered, foreign, garbage), fc.boolean(), async (tk, viaApi) => {
      if (viaApi) {
        // Header values are trimmed by HTTP; a blank one is no ticket at all.
        const response = await rawRequest(
          port,
          requestText('GET', `/v1/sessions/${phantomId}`, [hostLine(), `Authorization: Ticket ${tk}`, 'Connection: close']),
        );
        assertHandled(`Authorization: Ticket ${tk}`, response.status, response.body);
        assert.equal(response.status, 401, tk);
      } else {
        const opened = await openViewerSocket(viewerSocketUrl(t.server.url, phantomId, tk));
        if ('ws' in opened) {
          opened.ws.terminate();
          assert.fail(`upgraded with ticket ${tk}`);
        }
        assert.equal(opened.refused.status, 401, tk);
        assert.ok(opened.refused.code === 'TICKET_INVALID' || opened.refused.code === 'TICKET_MISSING', opened.refused.code);
      }
    }),
    runs(150),
  );
  // A ticket is no API key, and an API key no ticket.
  const asKey = await rawRequest(port, requestText('GET', '/v1/sessions', [hostLine(), `Authorization: Bearer ${ticket}`, 'Connection: close']));
  assertHandled('ticket as API key', asKey.status, asKey.body);
  assert.equal(asKey.status, 401);
  assert.deepEqual(await openViewerSocket(viewerSocketUrl(t.server.url, session.id, testApiKey)), { refused: { status: 401, code: 'TICKET_INVALID' } });
});

// ---- what porthole's handlers never see ----

/** A 4xx whose body names a registry code of that status. */
function assertRefused(where: string, response: RawResponse): void {
  assertHandled(where, response.status, response.body);
  assert.ok(response.status >= 400, `${where} → ${response.status}`);
}

test('relay: a malformed percent-encoding in the path is a 4xx with a registry code, not 500', async () => {
  const ticket = encodeURIComponent(t.server.tickets.issue(phantomId).ticket);
  for (const id of ['%E0%A4%A', '%ZZ', '%', 'ses_%C0']) {
    const response = await rawRequest(port, requestText('GET', `/v1/sessions/${id}/vnc?ticket=${ticket}`, upgradeHeaders()));
    assertRefused(`upgrade /v1/sessions/${id}/vnc`, response);
  }
});

test('HTTP: a malformed percent-encoding in the path has a registry code', async () => {
  for (const path of ['/v1/sessions/%E0%A4%A', '/v1/sessions/%ZZ/events', '/%']) {
    assertRefused(`GET ${path}`, await rawRequest(port, requestText('GET', path, [hostLine(), bearerLine, 'Connection: close'])));
  }
});

test('requests Node’s parser refuses, or answers itself, have a registry code', async () => {
  const big = Array.from({ length: 2_000 }, (_, i) => `x-header-${i}: v`);
  const cases: Array<[string, string]> = [
    ['2,000 long headers (431)', requestText('GET', '/v1/sessions', [hostLine(), ...big, 'Connection: close'])],
    ['a space in the path', requestText('GET', '/v1/ses sions', [hostLine(), 'Connection: close'])],
    ['an unknown method', requestText('BREW', '/v1/sessions', [hostLine(), 'Connection: close'])],
    [
      'two Content-Lengths',
      requestText('POST', '/v1/sessions', [hostLine(), 'Content-Type: application/json', 'Content-Length: 2', 'Content-Length: 3', 'Connection: close'], '{}'),
    ],
    [
      'Transfer-Encoding with Content-Length',
      requestText(
        'POST',
        '/v1/sessions',
        [hostLine(), 'Content-Type: application/json', 'Transfer-Encoding: chunked', 'Content-Length: 2', 'Connection: close'],
        '{}',
      ),
    ],
    ['a header without a colon', requestText('GET', '/healthz', [hostLine(), 'no colon here', 'Connection: close'])],
    ['no Host header', requestText('GET', '/v1/sessions', [bearerLine, 'Connection: close'])],
    ['Expect: something', requestText('GET', '/v1/sessions', [hostLine(), 'Expect: something', 'Connection: close'])],
  ];
  const failures: string[] = [];
  const seen: string[] = [];
  for (const [what, request] of cases) {
    try {
      const response = await rawRequest(port, request);
      seen.push(`${what} → ${response.status} ${String((JSON.parse(response.body.toString()) as { error?: { code?: string } }).error?.code)}`);
      assertRefused(what, response);
    } catch (error) {
      failures.push((error as Error).message.split('\n')[0]!);
    }
  }
  assert.deepEqual(failures, []);
  assert.ok(seen.includes('2,000 long headers (431) → 431 HEADERS_TOO_LARGE'), seen.join('; '));
  assert.ok(seen.includes('Expect: something → 417 EXPECTATION_FAILED'), seen.join('; '));
});

test('upgrades ws refuses have a registry code', async () => {
  const path = vncPath(phantomId, t.server.tickets.issue(phantomId).ticket);
  const cases: Array<[string, Record<string, string | null>]> = [
    ['bad Sec-WebSocket-Key', { 'Sec-WebSocket-Key': 'bad' }],
    ['no Sec-WebSocket-Key', { 'Sec-WebSocket-Key': null }],
    ['Sec-WebSocket-Version 7', { 'Sec-WebSocket-Version': '7' }],
    ['Upgrade: h2c', { Upgrade: 'h2c' }],
  ];
  for (const [what, overrides] of cases) {
    const response = await rawRequest(port, requestText('GET', path, upgradeHeaders(overrides)));
    assertRefused(what, response);
    assert.equal((JSON.parse(response.body.toString()) as { error: { code: string } }).error.code, 'MALFORMED_REQUEST', what);
  }
  assert.deepEqual(t.server.relay.stats(), []);
});

test('only the canonical spelling of a ticket verifies', () => {
  const ticket = t.server.tickets.issue(phantomId).ticket;
  const mac = ticket.slice(ticket.lastIndexOf('.') + 1);
  const body = ticket.slice(0, ticket.lastIndexOf('.') + 1);
  // 32 bytes are 43 base64url characters: the last one carries 2 unused bits.
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const sibling = alphabet[alphabet.indexOf(mac.at(-1)!) ^ 1]!;
  for (const spelling of [`${body}${mac.slice(0, 10)}*${mac.slice(10)}`, `${body}${mac.slice(0, -1)}${sibling}`, `${body}${mac}=`]) {
    assert.throws(() => t.server.tickets.verify(spelling, phantomId), { code: 'TICKET_INVALID' }, spelling);
  }
  assert.doesNotThrow(() => t.server.tickets.verify(ticket, phantomId));
});

test('afterwards: the server answers, the session lives, nothing is held, no error was logged', async (tc) => {
  const health = await fetch(`${t.server.url}/healthz`);
  assert.equal(health.status, 200);
  const current = await t.api.getSession(session.id);
  assert.equal(current.state, 'ready');
  assert.deepEqual(
    (await t.api.listSessions()).sessions.map((s) => s.id),
    [session.id],
    'no session was created',
  );
  await relayLetsGo();
  const fds = await openFdCount('self');
  assert.ok(fds <= fdsBefore + 10, `server fds ${fdsBefore} → ${fds}`);
  const errors = (await readFile(t.logFile, 'utf8'))
    .split('\n')
    .filter((line) => /"level":(50|60)/.test(line))
    .map((line) => line.slice(0, 300));
  assert.deepEqual(errors, [], 'no error-level log line');
  const histogram = [...statuses.entries()].sort(([a], [b]) => a - b).map(([s, n]) => `${s}×${n}`);
  tc.diagnostic(`responses by status: ${histogram.join(' ')}; server fds ${fdsBefore} → ${fds}`);
});
