import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { SandboxId, SessionId } from '../../src/protocol/ids.js';
import type { Session } from '../../src/protocol/session.js';
import { sandboxesDir } from '../../src/drivers/local-layout.js';
import { readRecord } from '../../src/drivers/local/sandbox-record.js';
import type { DemoCredentials } from '../../src/providers/demo.js';
import { hashAgentToken } from '../../src/server/sessions/agent-token.js';
import { demoSignIn } from '../support/demo-sign-in.js';
import { freshViewerUrl } from '../support/faults.js';
import { sandboxProcesses } from '../support/sandbox-processes.js';
import { startTestServer, testApiKey, type TestServer } from '../support/server.js';
import { closeOf, connectViewer } from '../support/ws.js';
import { elapse, until } from '../support/until.js';

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

/**
 * A demo credential file with real tokens from the server's own demo provider: the server verifies
 * deliveries with the issuer, so the made-up tokens these tests used before would now be refused
 * (they were never realistic: no sign-in produces them).
 */
async function demoCredential(overrides: Partial<DemoCredentials> = {}): Promise<string> {
  return JSON.stringify({ ...(await demoSignIn(t.server.demoOidc!.issuer)), ...overrides });
}

/** Same shape, every token made up: what a person holding the sandbox token could forge. */
function forgedDemoCredential(): string {
  return JSON.stringify({
    issuer: t.server.demoOidc!.issuer,
    client_id: 'porthole-demo-cli',
    access_token: randomBytes(32).toString('base64url'),
    refresh_token: randomBytes(32).toString('base64url'),
    id_token: `${Buffer.from('{"alg":"RS256"}').toString('base64url')}.${Buffer.from('{"sub":"ceo"}').toString('base64url')}.${randomBytes(64).toString('base64url')}`,
    token_type: 'Bearer',
    scope: 'openid email profile offline_access',
    expires_at: '2099-01-01T00:00:00.000Z',
    account: { sub: 'ceo', email: 'ceo@victim.example' },
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
    const response = await post(a.session.id, 'credentials', delivery(await demoCredential()), token);
    const body = (await response.json()) as { error: { code: string } };
    assert.deepEqual([response.status, body.error.code], [401, 'AGENT_TOKEN_INVALID'], what);
  }
  assert.equal(await storedCredentialStatus(a.session.id), 404, 'nothing was stored');
  assert.equal((await t.api.getSession(a.session.id)).state, 'ready');
});

test('a file that does not validate, or names another provider, is refused and stores nothing', async () => {
  const { session, token } = await sessionWithToken();
  const half = (await demoCredential()).slice(0, 40);
  let response = await post(session.id, 'credentials', delivery(half), token);
  assert.deepEqual([response.status, ((await response.json()) as { error: { code: string } }).error.code], [422, 'CREDENTIAL_INVALID']);
  response = await post(session.id, 'credentials', { ...delivery(await demoCredential()), provider: 'codex' }, token);
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
  const content = await demoCredential();

  const first = await post(session.id, 'credentials', delivery(content), token);
  assert.equal(first.status, 201);
  assert.deepEqual(await first.json(), { stored: true, state: 'completed' });
  const close = await closed;
  assert.deepEqual([close.code, close.reason], [1000, 'completed']);

  const done = await t.api.getSession(session.id);
  assert.equal(done.state, 'completed');
  assert.equal(done.reason, 'credentials_captured');
  await until(
    'the sandbox is destroyed',
    () => t.server.driver.inspect(session.sandboxId as SandboxId),
    (info) => info === null,
    10_000,
    { intervalMs: 50 },
  );
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
  // The login's directory as the host sees it: the sandbox's HOME is a tmpfs in its own mount
  // namespace, reached through its agent's root.
  const record = await readRecord(join(sandboxesDir(t.dataDir), session.sandboxId!));
  const dir = join(`/proc/${record!.agent!.pid}/root`, '/home/porthole/.porthole/login/demo');
  const file = join(dir, 'credentials.json');
  const waitingFor = async (pattern: RegExp) => {
    const { found } = await until(
      `a login.waiting matching ${pattern}`,
      async () => {
        const waits = (await t.api.listEvents(session.id)).events.filter((e) => e.type === 'login.waiting');
        return { found: waits.find((e) => pattern.test(String(e.details.waitingFor))), seen: waits.map((e) => e.details.waitingFor) };
      },
      (r) => r.found !== undefined,
      10_000,
      { intervalMs: 100 },
    );
    return found!;
  };
  await waitingFor(/the CLI to write credentials\.json/);

  // Files in the sandbox's tmpfs are made by its own uid (root is not mapped into its user namespace).
  const asSandbox = (script: string, input = ''): void => {
    const result = spawnSync('/bin/sh', ['-c', script, 'sh', file], { uid: record!.uid, gid: record!.gid, input });
    assert.equal(result.status, 0, `${script}: ${result.stderr?.toString()}`);
  };
  const content = await demoCredential();
  asSandbox('cat > "$1"', content.slice(0, 60));
  const half = await waitingFor(/credentials\.json to hold/);
  assert.equal(JSON.stringify(half.details).includes(content.slice(20, 60)), false, 'the timeline never echoes file content');

  asSandbox('rm "$1" && cat > "$1.outside" && ln -s "$1.outside" "$1"', content);
  await waitingFor(/symbolic link/);
  // Nothing may happen here, and only time shows that: give a delivery that should not be made a second to be made.
  await elapse(1_000, 'neither the half file nor the symlink is delivered');
  assert.equal(await storedCredentialStatus(session.id), 404, 'neither the half file nor the symlink was delivered');
  assert.notEqual((await t.api.getSession(session.id)).state, 'completed');

  asSandbox('rm "$1" && cat > "$1"', content);
  const done = await t.waitForState(session.id, ['completed'], 15_000);
  assert.equal(done.credential?.account, 'demo@porthole.test');
  const { events } = await t.api.listEvents(session.id);
  assert.ok(events.some((e) => e.type === 'credentials.stored'));
});

test('a forged demo credential (made-up tokens, the right shape) fails the session, naming verification; nothing is stored', async () => {
  const { session, token } = await sessionWithToken();
  const viewer = await connectViewer(freshViewerUrl(t, session.id));
  const closed = closeOf(viewer.ws);

  const response = await post(session.id, 'credentials', delivery(forgedDemoCredential()), token);
  const body = (await response.json()) as { error: { code: string; message: string; details: { reason: string } } };
  assert.deepEqual([response.status, body.error.code], [422, 'CREDENTIAL_UNVERIFIED']);
  assert.equal(body.error.message, 'The credential did not verify with the provider.');
  assert.match(body.error.details.reason, /refused the access token/);

  const failed = await t.api.getSession(session.id);
  assert.equal(failed.state, 'failed');
  assert.equal(failed.reason, 'CREDENTIAL_UNVERIFIED');
  assert.match(failed.detail ?? '', /^The credential did not verify with the provider: the demo provider refused the access token at userinfo \(401\)\.$/);
  assert.equal(failed.credential, null);
  assert.equal(await storedCredentialStatus(session.id), 404, 'nothing was stored');
  const close = await closed;
  assert.deepEqual([close.code, close.reason], [4410, 'SESSION_FAILED']);
  const { events } = await t.api.listEvents(session.id);
  assert.ok(!events.some((e) => e.type === 'credentials.stored'));
  const failure = events.find((e) => e.type === 'session.failed');
  assert.equal(failure?.reason, 'CREDENTIAL_UNVERIFIED');
  assert.ok(!JSON.stringify(events).includes('ceo@victim.example'), 'the forged account is nowhere on the timeline');

  // A later delivery, genuine or not, cannot revive it.
  const later = await post(session.id, 'credentials', delivery(await demoCredential()), token);
  assert.deepEqual([later.status, ((await later.json()) as { error: { code: string } }).error.code], [410, 'SESSION_FAILED']);
});

test('a genuine demo credential completes with the account the issuer names, whatever the file claims; it is "verified"', async () => {
  const { session, token } = await sessionWithToken();
  const content = await demoCredential({ account: { sub: 'ceo', email: 'ceo@victim.example' }, expires_at: '2099-01-01T00:00:00.000Z' });
  const response = await post(session.id, 'credentials', { ...delivery(content), account: 'ceo@victim.example', expiresAt: '2099-01-01T00:00:00.000Z' }, token);
  assert.equal(response.status, 201);
  const done = await t.api.getSession(session.id);
  assert.equal(done.state, 'completed');
  assert.equal(done.credential?.account, 'demo@porthole.test');
  assert.equal(done.credential?.verification, 'verified');
  assert.ok(Date.parse(done.credential?.expiresAt ?? '') < Date.now() + 61 * 60_000, `the issuer's expiry, not the file's 2099: ${done.credential?.expiresAt}`);
  const read = await t.api.getCredentials(session.id);
  assert.deepEqual([read.account, read.verification, read.file], ['demo@porthole.test', 'verified', content]);
});

// Last: it stops the server's demo provider.
test('when the demo provider cannot be asked, the delivery is 503 (the agent retries) and the session is unchanged', async () => {
  const { session, token } = await sessionWithToken();
  const content = await demoCredential();
  await t.server.demoOidc!.close();
  const response = await post(session.id, 'credentials', delivery(content), token);
  const body = (await response.json()) as { error: { code: string; details: { reason: string } } };
  assert.deepEqual([response.status, body.error.code], [503, 'CREDENTIAL_VERIFY_UNAVAILABLE']);
  assert.match(body.error.details.reason, /could not be asked \(ECONNREFUSED\)/);
  assert.equal((await t.api.getSession(session.id)).state, 'ready');
  assert.equal(await storedCredentialStatus(session.id), 404);
});
