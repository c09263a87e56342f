import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import type { RunEvent } from '../../src/protocol/runs.js';
import { deliverDemoCredential } from '../support/demo-sign-in.js';
import { startTestServer, testApiKey, type TestServer } from '../support/server.js';
import { until } from '../support/until.js';

// Runs — the remote CLI — end to end on the local driver: `porthole run demo -- whoami` starts a
// sandbox with no desktop, the demo CLI in it calls the demo provider's userinfo with the stored
// grant and prints the account, streamed; the sandbox is gone after; the refresh token is nowhere in
// what the API returns for the run. A CLI that refreshes by itself rotates the grant: porthole keeps
// the new one, so the grant lives on.

const run = promisify(execFile);
const cli = new URL('../../src/cli/main.js', import.meta.url).pathname;
let t: TestServer;
let sessionId: string;
let issuer: string;

before(async () => {
  t = await startTestServer('runs');
  issuer = t.server.demoOidc!.issuer;
  const session = await t.readySession({ provider: 'demo', userId: 'grace' });
  sessionId = (await deliverDemoCredential(t, session.id, issuer)).id;
});
after(async () => {
  await t?.stop();
});

function porthole(args: string[]) {
  const env = { ...process.env, PORTHOLE_URL: t.server.url, PORTHOLE_API_KEY: testApiKey };
  return run(process.execPath, [cli, ...args], { env, timeout: 120_000 }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

async function allEvents(runId: string): Promise<RunEvent[]> {
  const response = await fetch(`${t.server.url}/v1/runs/${runId}/events?limit=1000`, { headers: { authorization: `Bearer ${testApiKey}` } });
  return ((await response.json()) as { events: RunEvent[] }).events;
}

/** Sandboxes the driver runs that no live session owns: a run's, left behind. */
async function strayRunSandboxes(): Promise<string[]> {
  const live = new Set((await t.api.listSessions()).sessions.map((s) => s.sandboxId));
  return (await t.server.driver.list()).map((s) => s.id).filter((id) => !live.has(id));
}

test('porthole run demo -- whoami prints the account, streamed; its sandbox is gone after; nothing it returns holds the refresh token', async () => {
  const { file } = await t.api.getCredentials(sessionId);
  const { refresh_token: refreshToken, access_token: accessToken } = JSON.parse(file) as { refresh_token: string; access_token: string };

  const result = await porthole(['run', 'demo', '--', 'whoami']);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /^signed in as demo@porthole\.test \(sub demo-[0-9a-f]+\)$/m);
  assert.match(result.stderr, /porthole: run run_\w+ with the demo credential of ses_\w+: starting a sandbox…/);
  assert.match(result.stderr, /porthole: sandbox ready in \d+ ms; running demo/);
  const runId = /run (run_\w+)/.exec(result.stderr)![1]!;

  const record = await t.api.getRun(runId);
  assert.equal(record.state, 'succeeded');
  assert.equal(record.exitCode, 0);
  assert.deepEqual(record.args, ['whoami']);
  const events = await allEvents(runId);
  const types = events.map((e) => e.type);
  for (const type of ['run.created', 'run.sandbox', 'run.started', 'run.output', 'run.exited', 'run.finished'])
    assert.ok(types.includes(type as never), `${type} in ${types}`);
  assert.ok(types.indexOf('run.started') < types.indexOf('run.output') && types.indexOf('run.output') < types.indexOf('run.exited'), 'in order');
  assert.deepEqual(await strayRunSandboxes(), [], 'the run’s sandbox is gone');

  // What the API returns for the run, and what the run printed, hold no secret of the credential.
  const returned = JSON.stringify([record, events, await t.api.request('GET', '/v1/runs')]);
  assert.ok(!returned.includes(refreshToken), 'no refresh token');
  assert.ok(!returned.includes(accessToken), 'no access token either');
  assert.ok(!`${result.stdout}${result.stderr}`.includes(refreshToken));
});

test('a CLI that refreshes by itself rotates the grant: porthole stores the new file, and the grant lives on', async () => {
  const before = await t.server.store.getCredential(sessionId as never);
  const result = await porthole(['run', 'demo', '--session', sessionId, '--', 'whoami', '--refresh']);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /Refreshed the sign-in \(--refresh\)\.\nsigned in as demo@porthole\.test/);
  assert.match(result.stderr, /the CLI refreshed the grant; porthole stored the new credential/);
  const afterRun = await t.server.store.getCredential(sessionId as never);
  assert.equal(afterRun?.version, before!.version + 1, 'the new file is stored');
  assert.equal(afterRun?.refreshedAt !== null, true);
  // Had porthole kept the old refresh token, using it now would be reuse: the provider would revoke the grant.
  await t.server.refresher.refreshNow(sessionId as never, { evenIfNotDue: true });
  const fresh = await t.api.getSession(sessionId);
  assert.equal(fresh.credential?.state, 'active', fresh.credential?.refreshError ?? '');
  const token = await t.api.getAccessToken(sessionId);
  assert.equal((await fetch(`${issuer}/me`, { headers: { authorization: `Bearer ${token.accessToken}` } })).status, 200);
});

test('a run of an unknown session, of an unknown provider, or with a file outside its directory is refused with its code', async () => {
  const unknown = await porthole(['run', 'demo', '--session', 'ses_00000000000000000000', '--', 'whoami']);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /SESSION_NOT_FOUND/);
  const noProvider = await porthole(['run', 'nope', '--', 'x']);
  assert.equal(noProvider.code, 2);
  const response = await fetch(`${t.server.url}/v1/runs`, {
    method: 'POST',
    headers: { authorization: `Bearer ${testApiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ sessionId, args: ['whoami'], files: { '../escape': 'x' } }),
  });
  assert.equal(response.status, 400);
  assert.equal(((await response.json()) as { error: { code: string } }).error.code, 'VALIDATION_FAILED');
  await until('no run left', strayRunSandboxes, (ids) => ids.length === 0);
});
