// What an app integrating porthole relies on, against a real server: keys per app (each sees only the
// sessions it created), live events as Server-Sent Events that resume without a gap, the firehose
// scoped to a key, and the dashboard login without a restart (form with an admin key, login links).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import type { SessionEvent } from '../../src/protocol/session.js';
import { startTestServer, testApiKey, type TestServer } from '../support/server.js';
import { openEventStream } from '../support/sse.js';
import { until } from '../support/until.js';

let t: TestServer;
const admin = { authorization: `Bearer ${testApiKey}` };
let appOne: { id: string; key: string };
let appTwo: { id: string; key: string };

async function api(method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<{ status: number; body: any }> {
  const response = await fetch(`${t.server.url}${path}`, {
    method,
    headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
    redirect: 'manual',
  });
  const text = await response.text();
  return { status: response.status, body: text.startsWith('{') ? JSON.parse(text) : text };
}
const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

before(async () => {
  t = await startTestServer('apps');
  appOne = (await api('POST', '/v1/keys', admin, { name: 'app one' })).body;
  appTwo = (await api('POST', '/v1/keys', admin, { name: 'app two' })).body;
});
after(async () => {
  await t?.stop();
});

test('an app key sees the sessions it created and no others; userId filters; the audit names the key', async () => {
  const mine = (await api('POST', '/v1/sessions', bearer(appOne.key), { userId: 'alice' })).body;
  assert.equal(mine.apiKeyId, appOne.id);
  const theirs = (await api('POST', '/v1/sessions', bearer(appTwo.key), { userId: 'alice' })).body;

  const listed = (await api('GET', '/v1/sessions?userId=alice', bearer(appOne.key))).body.sessions.map((s: { id: string }) => s.id);
  assert.deepEqual(listed, [mine.id]);
  const all = (await api('GET', '/v1/sessions?userId=alice', admin)).body.sessions.map((s: { id: string }) => s.id);
  assert.deepEqual(all, [theirs.id, mine.id], 'an admin key sees every app’s');
  assert.deepEqual((await api('GET', '/v1/sessions?userId=bob', admin)).body.sessions, []);

  for (const [method, path] of [
    ['GET', `/v1/sessions/${theirs.id}`],
    ['GET', `/v1/sessions/${theirs.id}/events`],
    ['POST', `/v1/sessions/${theirs.id}/ticket`],
    ['GET', `/v1/sessions/${theirs.id}/credentials`],
    ['DELETE', `/v1/sessions/${theirs.id}`],
  ] as const) {
    const answer = await api(method, path, bearer(appOne.key));
    assert.equal(answer.status, 403, `${method} ${path}`);
    assert.equal(answer.body.error.code, 'SESSION_FORBIDDEN');
  }
  assert.equal((await api('GET', `/v1/sessions/${mine.id}`, bearer(appOne.key))).status, 200);
  assert.equal((await api('GET', '/v1/keys', bearer(appOne.key))).body.error.code, 'API_KEY_ADMIN_REQUIRED');
  assert.equal((await api('POST', '/v1/keys/rotate', bearer(appOne.key))).body.error.code, 'API_KEY_ADMIN_REQUIRED');

  // The credential read's audit event names the key that read it.
  await t.waitForState(mine.id, ['ready', 'authenticating']);
  await t.server.vault.put(mine.id, { provider: 'demo', content: '{"x":1}', expiresAt: null, account: null });
  assert.equal((await api('GET', `/v1/sessions/${mine.id}/credentials`, bearer(appOne.key))).status, 200);
  const events: SessionEvent[] = (await api('GET', `/v1/sessions/${mine.id}/events`, admin)).body.events;
  const read = events.find((e) => e.type === 'credentials.read');
  assert.equal(read?.details.apiKeyId, appOne.id);
  assert.equal(read?.details.apiKeyName, 'app one');

  await api('DELETE', `/v1/sessions/${mine.id}`, admin);
  await api('DELETE', `/v1/sessions/${theirs.id}`, admin);
});

test('a session’s event stream resumes with Last-Event-ID and misses nothing, then ends with the session', async () => {
  const session = (await api('POST', '/v1/sessions', bearer(appOne.key), {})).body;
  const url = `${t.server.url}/v1/sessions/${session.id}/events`;
  const first = await openEventStream(url, bearer(appOne.key));
  const seen = () => first.messages.filter((m) => m.event === undefined).map((m) => JSON.parse(m.data) as SessionEvent);
  await until('the stream shows the session ready', seen, (events) => events.some((e) => e.to === 'ready'), 60_000);
  first.close();
  await first.ended;
  const lastId = first.messages.filter((m) => m.id !== undefined).at(-1)!.id!;

  // While nobody listens: a viewer-less event and the end.
  await t.server.store.appendEvent(session.id, { type: 'viewer.connected', details: { note: 'while disconnected' } });
  await api('DELETE', `/v1/sessions/${session.id}`, bearer(appOne.key));

  const second = await openEventStream(url, { ...bearer(appOne.key), 'last-event-id': lastId });
  await second.ended;
  const resumed = second.messages.filter((m) => m.event === undefined).map((m) => JSON.parse(m.data) as SessionEvent);
  const end = second.messages.find((m) => m.event === 'end');
  assert.ok(end, 'the stream ends with an end event');
  assert.equal(JSON.parse(end.data).state, 'ended');

  const stored = (await api('GET', `/v1/sessions/${session.id}/events?limit=1000`, admin)).body.events.map((e: SessionEvent) => e.seq);
  const streamed = [...seen(), ...resumed].map((e) => e.seq);
  assert.deepEqual(streamed, stored.slice(0, streamed.length), 'in order, no gap, no repeat');
  assert.ok(resumed.some((e) => e.details.note === 'while disconnected'));
  assert.ok(resumed.every((e) => e.seq > Number(lastId)));
  assert.deepEqual(
    stored.filter((seq: number) => !streamed.includes(seq)),
    [],
    'every event the session had when its stream ended was streamed',
  );
});

test('the firehose streams the events of the key’s own sessions only; an admin’s streams all', async () => {
  const oneHose = await openEventStream(`${t.server.url}/v1/events`, bearer(appOne.key));
  const adminHose = await openEventStream(`${t.server.url}/v1/events`, admin);
  const mine = (await api('POST', '/v1/sessions', bearer(appOne.key), { userId: 'hose' })).body;
  const theirs = (await api('POST', '/v1/sessions', bearer(appTwo.key), { userId: 'hose' })).body;
  const sessionsOf = (stream: typeof oneHose) =>
    new Set(stream.messages.filter((m) => m.event === undefined).map((m) => (JSON.parse(m.data) as SessionEvent).sessionId));
  await until(
    'the admin firehose saw both sessions',
    () => sessionsOf(adminHose),
    (ids) => ids.has(mine.id) && ids.has(theirs.id),
    30_000,
  );
  await until(
    'app one’s firehose saw its session',
    () => sessionsOf(oneHose),
    (ids) => ids.has(mine.id),
    30_000,
  );
  assert.deepEqual([...sessionsOf(oneHose)], [mine.id]);
  const seqs = adminHose.messages.filter((m) => m.id !== undefined).map((m) => Number(m.id));
  assert.deepEqual(
    seqs,
    [...seqs].sort((a, b) => a - b),
    'in seq order',
  );
  oneHose.close();
  adminHose.close();
  await api('DELETE', `/v1/sessions/${mine.id}`, admin);
  await api('DELETE', `/v1/sessions/${theirs.id}`, admin);
  assert.equal((await api('GET', '/v1/events', { ...admin, accept: 'text/event-stream', 'last-event-id': 'x' })).status, 400);
  const notAStreamClient = await api('GET', '/v1/events', admin);
  assert.equal(notAStreamClient.status, 406, 'a stream that never ends only for who asks for one');
  assert.equal(notAStreamClient.body.error.code, 'NOT_ACCEPTABLE');
});

test('the dashboard login without a restart: a form that takes an admin key, and one-time login links', async () => {
  const form = await api('GET', '/login', {});
  assert.equal(form.status, 200);
  assert.match(form.body, /<form method="post" action="\/login">/);

  const post = (key: string, origin = t.server.url) =>
    fetch(`${t.server.url}/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin },
      body: new URLSearchParams({ apiKey: key }).toString(),
      redirect: 'manual',
    });
  const good = await post(testApiKey);
  assert.equal(good.status, 303);
  const cookie = good.headers.get('set-cookie')!.split(';')[0]!;
  assert.equal((await api('GET', '/v1/sessions', { cookie })).status, 200, 'the cookie is a dashboard login');
  const appKey = await post(appOne.key);
  assert.equal(appKey.status, 403);
  assert.match(await appKey.text(), /app key/);
  const wrong = await post('ph_not-a-key');
  assert.equal(wrong.status, 401);
  assert.doesNotMatch(await wrong.text(), /ph_not-a-key/, 'the key is never echoed');
  assert.equal((await post(testApiKey, 'http://127.0.0.1:1')).status, 403, 'a cross-site form post');
  const json = await api('POST', '/login', {}, { apiKey: testApiKey });
  assert.equal(json.status, 415, 'the login takes the form, not JSON');
  assert.equal(json.body.error.code, 'UNSUPPORTED_MEDIA_TYPE');

  // A login link from the API (admin key), good once.
  const link = (await api('POST', '/v1/login-links', admin)).body;
  assert.equal((await fetch(link.url, { redirect: 'manual' })).status, 303);
  assert.equal((await fetch(link.url, { redirect: 'manual' })).status, 401, 'used');
  assert.equal((await api('POST', '/v1/login-links', bearer(appOne.key))).status, 403);

  // And from the CLI on the server's host, with the data directory and no key.
  const cli = new URL('../../src/cli/main.js', import.meta.url).pathname;
  const { stdout } = await promisify(execFile)(process.execPath, [cli, 'login-link'], {
    env: { PATH: process.env.PATH, PORTHOLE_URL: t.server.url, PORTHOLE_DATA_DIR: t.dataDir },
  });
  const cliUrl = /(http:\/\/\S+\/login\?token=\S+)/.exec(stdout)?.[1];
  assert.ok(cliUrl, stdout);
  assert.equal((await fetch(cliUrl, { redirect: 'manual' })).status, 303);
  assert.equal((await fetch(cliUrl, { redirect: 'manual' })).status, 401);
});

test('a revoked key authenticates nothing', async () => {
  assert.equal((await api('DELETE', `/v1/keys/${appTwo.id}`, admin)).status, 200);
  const answer = await api('GET', '/v1/sessions', bearer(appTwo.key));
  assert.equal(answer.status, 401);
  assert.equal(answer.body.error.code, 'API_KEY_INVALID');
  const { keys } = (await api('GET', '/v1/keys', admin)).body;
  assert.ok(keys.find((k: { id: string }) => k.id === appTwo.id).revokedAt);
  assert.ok(!JSON.stringify(keys).includes(appTwo.key), 'the list never holds a key');
});
