// GET /v1/sessions/:id/credentials and POST /v1/keys/rotate on a real server. Credentials are put in
// with `server.vault.put` on sessions created through the API: the agent's delivery path is tested
// with the agent, not here.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { SessionId } from '../../src/protocol/ids.js';
import { credentialResponse } from '../../src/protocol/credentials.js';
import { sessionSchema } from '../../src/protocol/session.js';
import { startTestServer, testApiKey, type TestServer } from '../support/server.js';
import { until } from '../support/until.js';

let t: TestServer;
const account = `carol-${randomBytes(4).toString('hex')}@example.com`;
const refreshToken = `rt-${randomBytes(16).toString('hex')}`;
const accessToken = `at-${randomBytes(16).toString('hex')}`;
const content = JSON.stringify({ tokens: { access_token: accessToken, refresh_token: refreshToken }, last_refresh: '2025-01-01T00:00:00Z' }, null, 2);
let withCredential: SessionId;
let withoutCredential: SessionId;

before(async () => {
  t = await startTestServer('credentials-api');
  // Sessions without a provider: no login runs in their sandboxes, the vault is fed directly.
  withCredential = (await t.api.createSession({})).id as SessionId;
  withoutCredential = (await t.api.createSession({})).id as SessionId;
  const put = await t.server.vault.put(withCredential, { provider: 'codex', content, expiresAt: '2031-05-06T07:08:09Z', account });
  assert.deepEqual(put, { created: true, hasConflict: false });
});
after(() => t?.stop());

async function call(method: string, path: string, headers: Record<string, string> = { authorization: `Bearer ${testApiKey}` }) {
  const response = await fetch(`${t.server.url}${path}`, { method, headers });
  const text = await response.text();
  return { status: response.status, json: text ? JSON.parse(text) : null, text, headers: response.headers };
}

let cookie: string | undefined;
/** The one-time login link works once: log in once, keep the cookie. */
async function dashboardCookie(): Promise<string> {
  if (cookie) return cookie;
  const login = new URL(t.server.loginUrl);
  const response = await fetch(`${t.server.url}${login.pathname}${login.search}`, { redirect: 'manual' });
  assert.equal(response.status, 303);
  cookie = (response.headers.get('set-cookie') ?? '').split(';')[0]!;
  return cookie;
}

describe('GET /v1/sessions/:id/credentials', () => {
  test('hands the file to an API key, and records the read on the timeline without content', async () => {
    const got = await call('GET', `/v1/sessions/${withCredential}/credentials`);
    assert.equal(got.status, 200, got.text);
    credentialResponse.parse(got.json);
    assert.deepEqual(
      { ...got.json, capturedAt: '' },
      // A put that does not say how it was checked is the weaker `offline-checks-only`.
      {
        sessionId: withCredential,
        provider: 'codex',
        file: content,
        capturedAt: '',
        expiresAt: '2031-05-06T07:08:09.000Z',
        account,
        verification: 'offline-checks-only',
      },
    );
    assert.equal(got.headers.get('cache-control'), 'no-store');

    await call('GET', `/v1/sessions/${withCredential}/credentials`);
    const { json } = await call('GET', `/v1/sessions/${withCredential}/events`);
    const reads = json.events.filter((e: { type: string }) => e.type === 'credentials.read');
    assert.equal(reads.length, 2, 'one audit event per read');
    for (const read of reads) {
      assert.deepEqual(Object.keys(read.details).sort(), ['apiKeyId', 'apiKeyName', 'requestId']);
      assert.equal(read.details.apiKeyId, 'env', 'the PORTHOLE_API_KEY key');
      assert.equal(read.details.apiKeyName, 'PORTHOLE_API_KEY');
      assert.match(read.details.requestId, /^[0-9a-f]{6}-[0-9a-z]+$/);
    }
    assert.notEqual(reads[0].details.requestId, reads[1].details.requestId);
    assert.ok(!JSON.stringify(json).includes(refreshToken), 'the timeline holds no content');
  });

  test('needs an API key: none, a wrong one, a dashboard login or a viewer ticket are refused, and not audited', async () => {
    const before = (await t.server.store.listEvents(withCredential)).length;
    const none = await call('GET', `/v1/sessions/${withCredential}/credentials`, {});
    assert.equal(none.status, 401);
    assert.equal(none.json.error.code, 'UNAUTHENTICATED');
    const wrong = await call('GET', `/v1/sessions/${withCredential}/credentials`, { authorization: 'Bearer not-the-key-0000000000' });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.json.error.code, 'API_KEY_INVALID');
    const dashboard = await call('GET', `/v1/sessions/${withCredential}/credentials`, { cookie: await dashboardCookie() });
    assert.equal(dashboard.status, 403);
    assert.equal(dashboard.json.error.code, 'API_KEY_REQUIRED');
    const { ticket } = await t.api.createTicket(withCredential);
    const viewer = await call('GET', `/v1/sessions/${withCredential}/credentials`, { authorization: `Ticket ${ticket}` });
    assert.equal(viewer.status, 401);
    for (const refused of [none, wrong, dashboard, viewer]) assert.ok(!refused.text.includes(refreshToken));
    assert.equal((await t.server.store.listEvents(withCredential)).length, before);
  });

  test('404 with a code: a session without credentials, an unknown session', async () => {
    const missing = await call('GET', `/v1/sessions/${withoutCredential}/credentials`);
    assert.equal(missing.status, 404);
    assert.equal(missing.json.error.code, 'CREDENTIALS_NOT_FOUND');
    const unknown = await call('GET', '/v1/sessions/ses_00000000000000000000/credentials');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.error.code, 'SESSION_NOT_FOUND');
    const events = await t.server.store.listEvents(withoutCredential);
    assert.ok(!events.some((e) => e.type === 'credentials.read'), 'no read, no audit event');
  });

  test('a session carries its credential summary (never the content); one without has null', async () => {
    const session = await t.api.getSession(withCredential);
    sessionSchema.parse(session);
    assert.deepEqual(
      { ...session.credential, capturedAt: '' },
      {
        provider: 'codex',
        account,
        capturedAt: '',
        expiresAt: '2031-05-06T07:08:09.000Z',
        verification: 'offline-checks-only',
        state: 'active',
        refreshedAt: null,
        refreshError: null,
      },
    );
    assert.equal((await t.api.getSession(withoutCredential)).credential, null);
    const list = await call('GET', '/v1/sessions');
    assert.ok(list.json.sessions.find((s: { id: string }) => s.id === withCredential).credential);
    assert.ok(!list.text.includes(refreshToken));
  });
});

describe('POST /v1/keys/rotate', () => {
  test('re-encrypts under a new key; the credential still reads; API key only', async () => {
    const before = await t.server.vault.get(withCredential);
    const dashboard = await call('POST', '/v1/keys/rotate', { cookie: await dashboardCookie(), origin: t.server.url });
    assert.equal(dashboard.status, 403);
    assert.equal(dashboard.json.error.code, 'API_KEY_REQUIRED');

    const rotated = await call('POST', '/v1/keys/rotate');
    assert.equal(rotated.status, 200, rotated.text);
    assert.equal(rotated.json.reencrypted, 1);
    assert.notEqual(rotated.json.keyId, before?.keyId);
    const keyring = JSON.parse(await readFile(join(t.dataDir, 'keyring.json'), 'utf8'));
    assert.deepEqual(
      keyring.keys.map((k: { id: string }) => k.id),
      [rotated.json.keyId],
    );
    const got = await call('GET', `/v1/sessions/${withCredential}/credentials`);
    assert.equal(got.json.file, content);
  });

  test('the OpenAPI document says these routes take an API key only', async () => {
    const { json: doc } = await call('GET', '/v1/openapi.json', {});
    assert.deepEqual(doc.paths['/v1/sessions/{id}/credentials'].get.security, [{ apiKey: [] }]);
    assert.deepEqual(doc.paths['/v1/keys/rotate'].post.security, [{ apiKey: [] }]);
    assert.ok(doc.paths['/v1/sessions/{id}/credentials'].get.responses['404']);
  });
});

describe('the plaintext stays out of the database and the logs', () => {
  test('no file in the data directory holds it (while the account, stored in clear, is found: the data is on disk)', async () => {
    const keyring = await stat(join(t.dataDir, 'keyring.json'));
    assert.equal(keyring.mode & 0o777, 0o600);
    // PGlite writes through to <data>/pglite (its WAL at each commit).
    let sawAccount = false;
    for (const file of await filesUnder(join(t.dataDir, 'pglite'))) {
      const bytes = await readFile(file);
      if (bytes.includes(account)) sawAccount = true;
      assert.equal(bytes.indexOf(refreshToken), -1, `${file} holds the refresh token`);
      assert.equal(bytes.indexOf(accessToken), -1, `${file} holds the access token`);
    }
    assert.ok(sawAccount, 'the control value was found on disk, so the search looked at the data');
  });

  test('the server log never holds it', async () => {
    // The log is written asynchronously: wait until the lines of the reads above are in it.
    const log = await until(
      'the log holds the reads and the rotation',
      () => readFile(t.logFile, 'utf8'),
      (text) => text.includes('credentials read') && text.includes('master key rotated'),
      5_000,
      { intervalMs: 100 },
    ).catch(() => readFile(t.logFile, 'utf8'));
    assert.match(log, /credentials read/);
    assert.match(log, /master key rotated/);
    for (const secret of [refreshToken, accessToken]) assert.ok(!log.includes(secret), 'the log holds credential content');
  });
});

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await filesUnder(path)));
    else if (entry.isFile()) out.push(path);
  }
  return out;
}
