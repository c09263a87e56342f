import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { SandboxId, SessionId } from '../../src/protocol/ids.js';
import type { Session } from '../../src/protocol/session.js';
import { hashAgentToken } from '../../src/server/sessions/session-manager.js';
import { freshViewerUrl } from '../support/faults.js';
import { sandboxProcesses } from '../support/sandbox-processes.js';
import { startTestServer, testApiKey, type TestServer } from '../support/server.js';
import { closeOf, connectViewer } from '../support/ws.js';

// The agent channel's server side, with real sandboxes: the delivery is authenticated with the
// sandbox's own token and nothing else; a refused delivery stores nothing; a good one completes the
// session, closes its viewers with 1000 "completed" and destroys the sandbox; a second one is
// idempotent. The token the agent really holds is never visible to a test, so each case sets a
// known one on its session (the store keeps only hashes).

let t: TestServer;

before(async () => {
  t = await startTestServer('agent-delivery');
});
after(() => t?.stop());

/** A credential file of the demo provider's shape. */
function demoCredential(accessToken = `at_${randomBytes(16).toString('hex')}`): string {
  return JSON.stringify({
    issuer: 'http://127.0.0.1:1/',
    client_id: 'porthole-demo-cli',
    access_token: accessToken,
    refresh_token: `rt_${randomBytes(16).toString('hex')}`,
    id_token: 'x.y.z',
    token_type: 'Bearer',
    scope: 'openid email offline_access',
    expires_at: new Date(Date.now() + 3_600_000).toISOString(),
    account: { sub: 'demo', email: 'demo@porthole.test' },
  });
}

async function sessionWithToken(): Promise<{ session: Session; token: string }> {
  const session = await t.readySession({ provider: 'demo' });
  const token = randomBytes(32).toString('base64url');
  await t.server.store.setAgentTokenHash(session.id as SessionId, hashAgentToken(token));
  return { session, token };
}

function post(sessionId: string, path: 'credentials' | 'events', body: unknown, token?: string): Promise<Response> {
  return fetch(`${t.server.url}/v1/agent/sessions/${sessionId}/${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
}

const delivery = (content: string) => ({ provider: 'demo', file: 'credentials.json', content, expiresAt: null, account: null });

async function storedCredentialStatus(sessionId: string): Promise<number> {
  const response = await fetch(`${t.server.url}/v1/sessions/${sessionId}/credentials`, { headers: { authorization: `Bearer ${testApiKey}` } });
  await response.body?.cancel();
  return response.status;
}

test('a delivery with no token, a wrong token or another sandbox’s token is 401 and stores nothing', async () => {
  const a = await sessionWithToken();
  const b = await sessionWithToken();
  const cases: Array<[string, string | undefined]> = [
    ['no token', undefined],
    ['a wrong token', randomBytes(32).toString('base64url')],
    ['another sandbox’s token', b.token],
    ['an API key', testApiKey],
  ];
  for (const [what, token] of cases) {
    const response = await post(a.session.id, 'credentials', delivery(demoCredential()), token);
    const body = (await response.json()) as { error: { code: string } };
    assert.deepEqual([response.status, body.error.code], [401, 'AGENT_TOKEN_INVALID'], what);
  }
  assert.equal(await storedCredentialStatus(a.session.id), 404, 'nothing was stored');
  assert.equal((await t.api.getSession(a.session.id)).state, 'ready');
});

test('a file that does not validate, or names another provider, is refused and stores nothing', async () => {
  const { session, token } = await sessionWithToken();
  const half = demoCredential().slice(0, 40);
  let response = await post(session.id, 'credentials', delivery(half), token);
  assert.deepEqual([response.status, ((await response.json()) as { error: { code: string } }).error.code], [422, 'CREDENTIAL_INVALID']);
  response = await post(session.id, 'credentials', { ...delivery(demoCredential()), provider: 'codex' }, token);
  assert.deepEqual([response.status, ((await response.json()) as { error: { code: string } }).error.code], [409, 'PROVIDER_MISMATCH']);
  assert.equal(await storedCredentialStatus(session.id), 404);
});

test('agent events with the token land in the timeline; without it they are 401', async () => {
  const { session, token } = await sessionWithToken();
  assert.equal((await post(session.id, 'events', { type: 'login.waiting', details: { waitingFor: 'the CLI' } })).status, 401);
  assert.equal((await post(session.id, 'events', { type: 'login.waiting', details: { waitingFor: 'the CLI' } }, token)).status, 204);
  const { events } = await t.api.listEvents(session.id);
  assert.ok(events.some((e) => e.type === 'login.waiting' && e.details.waitingFor === 'the CLI'));
});

test('a good delivery completes the session, closes the viewer with 1000 "completed" and destroys the sandbox; a second is idempotent', async () => {
  const { session, token } = await sessionWithToken();
  const viewer = await connectViewer(freshViewerUrl(t, session.id));
  const closed = closeOf(viewer.ws);
  const content = demoCredential();

  const first = await post(session.id, 'credentials', delivery(content), token);
  assert.equal(first.status, 201);
  assert.deepEqual(await first.json(), { stored: true, state: 'completed' });
  const close = await closed;
  assert.deepEqual([close.code, close.reason], [1000, 'completed']);

  const done = await t.api.getSession(session.id);
  assert.equal(done.state, 'completed');
  assert.equal(done.reason, 'credentials_captured');
  const deadline = Date.now() + 10_000;
  while ((await t.server.driver.inspect(session.sandboxId as SandboxId)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(await t.server.driver.inspect(session.sandboxId as SandboxId), null, 'the sandbox is destroyed');
  assert.deepEqual(await sandboxProcesses(session.sandboxId!), []);

  const second = await post(session.id, 'credentials', delivery(content), token);
  assert.equal(second.status, 200);
  assert.deepEqual(await second.json(), { stored: false, state: 'completed' });
  const { events } = await t.api.listEvents(session.id);
  assert.equal(events.filter((e) => e.type === 'credentials.stored').length, 1, 'stored once');
  const stored = events.find((e) => e.type === 'credentials.stored')!;
  assert.equal(JSON.stringify(stored.details).includes('rt_'), false, 'the timeline holds no token');
});

test('the real agent: a file that does not validate is never delivered and the timeline says what it waits for; a symlink is refused; a valid file completes the session', async () => {
  const session = await t.readySession({ provider: 'demo' });
  // The login's directory as the host sees it (the sandbox's HOME is <data>/sandboxes/<id>/home).
  const dir = join(t.dataDir, 'sandboxes', session.sandboxId!, 'home', '.porthole', 'login', 'demo');
  const file = join(dir, 'credentials.json');
  const waitingFor = async (pattern: RegExp) => {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const { events } = await t.api.listEvents(session.id);
      const found = events.find((e) => e.type === 'login.waiting' && pattern.test(String(e.details.waitingFor)));
      if (found) return found;
      assert.ok(Date.now() < deadline, `no login.waiting matching ${pattern}; got ${JSON.stringify(events.filter((e) => e.type === 'login.waiting').map((e) => e.details.waitingFor))}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  await waitingFor(/the CLI to write credentials\.json/);

  const content = demoCredential();
  await writeFile(file, content.slice(0, 60), { mode: 0o644 });
  const half = await waitingFor(/credentials\.json to hold/);
  assert.equal(JSON.stringify(half.details).includes(content.slice(20, 60)), false, 'the timeline never echoes file content');

  await rm(file);
  await writeFile(join(t.dataDir, 'outside.json'), content, { mode: 0o644 });
  await symlink(join(t.dataDir, 'outside.json'), file);
  await waitingFor(/symbolic link/);
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  assert.equal(await storedCredentialStatus(session.id), 404, 'neither the half file nor the symlink was delivered');
  assert.notEqual((await t.api.getSession(session.id)).state, 'completed');

  await rm(file);
  await writeFile(file, content, { mode: 0o644 });
  const done = await t.waitForState(session.id, ['completed'], 15_000);
  assert.equal(done.credential?.account, 'demo@porthole.test');
  const { events } = await t.api.listEvents(session.id);
  assert.ok(events.some((e) => e.type === 'credentials.stored'));
});
