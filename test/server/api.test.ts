import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { SandboxId } from '../../src/protocol/ids.js';
import { startTestServer, testApiKey, type TestServer } from '../support/server.js';

let t: TestServer;
before(async () => {
  t = await startTestServer('api', { PORTHOLE_MAX_SESSIONS: '1' });
});
after(() => t?.stop());

async function call(method: string, path: string, init: { body?: string; headers?: Record<string, string>; key?: string | null } = {}) {
  const headers: Record<string, string> = { ...init.headers };
  if (init.key !== null) headers.authorization = `Bearer ${init.key ?? testApiKey}`;
  if (init.body !== undefined && !headers['content-type']) headers['content-type'] = 'application/json';
  const response = await fetch(`${t.server.url}${path}`, { method, headers, body: init.body, redirect: 'manual' });
  const text = await response.text();
  let json: any = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  return { status: response.status, json, headers: response.headers };
}

describe('authentication', () => {
  test('no credentials → 401 UNAUTHENTICATED; a wrong key → 401 API_KEY_INVALID', async () => {
    const none = await call('GET', '/v1/sessions', { key: null });
    assert.equal(none.status, 401);
    assert.equal(none.json.error.code, 'UNAUTHENTICATED');
    assert.ok(none.json.error.requestId);
    const wrong = await call('GET', '/v1/sessions', { key: 'not-the-key' });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.json.error.code, 'API_KEY_INVALID');
  });

  test('the first-run login link works once and sets a dashboard cookie that is refused cross-site', async () => {
    const bad = await call('GET', '/login?token=nope', { key: null });
    assert.equal(bad.status, 401);
    assert.equal(bad.json.error.code, 'LOGIN_TOKEN_INVALID');
    const loginPath = new URL(t.server.loginUrl).pathname + new URL(t.server.loginUrl).search;
    const ok = await call('GET', loginPath, { key: null });
    assert.equal(ok.status, 303);
    const cookie = ok.headers.get('set-cookie') ?? '';
    assert.match(cookie, /HttpOnly/);
    assert.match(cookie, /SameSite=Strict/);
    const again = await call('GET', loginPath, { key: null });
    assert.equal(again.json.error.code, 'LOGIN_TOKEN_INVALID', 'one-time');
    const pair = cookie.split(';')[0] ?? '';
    const list = await call('GET', '/v1/sessions', { key: null, headers: { cookie: pair } });
    assert.equal(list.status, 200);
    const forged = await call('POST', '/v1/sessions', { key: null, body: '{}', headers: { cookie: pair, origin: 'http://evil.example' } });
    assert.equal(forged.status, 403);
    assert.equal(forged.json.error.code, 'CSRF_REJECTED');
  });
});

describe('bad input gets a 4xx with a code, never a 500', () => {
  const cases: Array<[string, string, string, { body?: string; headers?: Record<string, string> }, number, string]> = [
    ['malformed JSON', 'POST', '/v1/sessions', { body: '{"provider":' }, 400, 'MALFORMED_JSON'],
    ['unknown field', 'POST', '/v1/sessions', { body: '{"evil":1}' }, 400, 'VALIDATION_FAILED'],
    ['wrong type', 'POST', '/v1/sessions', { body: '{"userId":42}' }, 400, 'VALIDATION_FAILED'],
    ['array body', 'POST', '/v1/sessions', { body: '[]' }, 400, 'VALIDATION_FAILED'],
    ['unknown provider', 'POST', '/v1/sessions', { body: '{"provider":"nope"}' }, 400, 'PROVIDER_UNKNOWN'],
    ['text body', 'POST', '/v1/sessions', { body: 'hello', headers: { 'content-type': 'text/plain' } }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
    ['oversized body', 'POST', '/v1/sessions', { body: JSON.stringify({ userId: 'x'.repeat(200_000) }) }, 413, 'BODY_TOO_LARGE'],
    ['malformed id', 'GET', '/v1/sessions/..%2f..%2fetc', {}, 400, 'VALIDATION_FAILED'],
    ['unknown id', 'GET', '/v1/sessions/ses_00000000000000000000', {}, 404, 'SESSION_NOT_FOUND'],
    ['unknown route', 'GET', '/v2/nothing', {}, 404, 'ROUTE_NOT_FOUND'],
    ['bad query', 'GET', '/v1/sessions?limit=-4', {}, 400, 'VALIDATION_FAILED'],
    ['bad state filter', 'GET', '/v1/sessions?state=dancing', {}, 400, 'VALIDATION_FAILED'],
  ];
  for (const [name, method, path, init, status, code] of cases) {
    test(name, async () => {
      const response = await call(method, path, init);
      assert.equal(response.status, status, JSON.stringify(response.json));
      assert.equal(response.json?.error?.code, code);
      assert.equal(typeof response.json.error.message, 'string');
    });
  }
});

test('the OpenAPI document describes exactly the routes the server registered', async () => {
  const { json: doc } = await call('GET', '/v1/openapi.json', { key: null });
  assert.equal(doc.openapi, '3.1.0');
  const documented = new Set<string>();
  for (const [path, ops] of Object.entries(doc.paths as Record<string, Record<string, unknown>>)) {
    for (const method of Object.keys(ops)) documented.add(`${method.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`);
  }
  const pages = new Set([
    'GET /',
    'GET /login',
    'POST /login',
    'POST /logout',
    'GET /assets/:file',
    'GET /v1/sessions/:id/viewer',
    'GET /v1/openapi.json',
    'GET /metrics',
  ]);
  const registered = new Set(t.server.routes.map((r) => `${r.method} ${r.url}`).filter((r) => !pages.has(r)));
  assert.deepEqual([...documented].sort(), [...registered].sort());
  const create = doc.paths['/v1/sessions'].post;
  assert.deepEqual(Object.keys(create.requestBody.content['application/json'].schema.properties).sort(), ['provider', 'userId']);
});

test('a session boots through its steps, refuses a second over the limit, ends on DELETE and leaves no sandbox', async () => {
  const created = await call('POST', '/v1/sessions', { body: JSON.stringify({ userId: 'alice' }) });
  assert.equal(created.status, 201);
  assert.equal(created.json.state, 'starting');
  const id = created.json.id as string;

  const over = await call('POST', '/v1/sessions', { body: '{}' });
  assert.equal(over.status, 429);
  assert.equal(over.json.error.code, 'TOO_MANY_SESSIONS');

  const ready = await t.waitForState(id, ['ready', 'failed']);
  assert.equal(ready.state, 'ready', ready.detail ?? '');
  const { json: timeline } = await call('GET', `/v1/sessions/${id}/events`);
  const steps = timeline.events.filter((e: any) => e.type === 'step.succeeded').map((e: any) => e.details.step);
  assert.deepEqual(steps, ['sandbox', 'agent', 'vnc']);
  assert.ok(timeline.events.some((e: any) => e.type === 'session.ready' && e.from === 'starting' && e.to === 'ready'));
  const later = await call('GET', `/v1/sessions/${id}/events?after=${timeline.events.at(-1).seq}`);
  assert.deepEqual(later.json.events, []);

  const ticket = await call('POST', `/v1/sessions/${id}/ticket`);
  assert.equal(ticket.status, 201);
  assert.ok(ticket.json.viewerUrl.startsWith(`${t.server.url}/v1/sessions/${id}/viewer?ticket=`));
  const asViewer = await call('GET', `/v1/sessions/${id}`, { key: null, headers: { authorization: `Ticket ${ticket.json.ticket}` } });
  assert.equal(asViewer.status, 200);
  const viewerCannotList = await call('GET', '/v1/sessions', { key: null, headers: { authorization: `Ticket ${ticket.json.ticket}` } });
  assert.equal(viewerCannotList.status, 401);

  const ended = await call('DELETE', `/v1/sessions/${id}`);
  assert.equal(ended.status, 200);
  assert.equal(ended.json.state, 'ended');
  assert.equal(ended.json.reason, 'user');
  assert.equal(await t.server.driver.inspect(ready.sandboxId as SandboxId), null, 'sandbox destroyed');
  const again = await call('DELETE', `/v1/sessions/${id}`);
  assert.equal(again.status, 200, 'ending is idempotent');
  assert.equal(again.json.version, ended.json.version, 'and changes nothing');
});
