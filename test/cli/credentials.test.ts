// `porthole credentials get|install` and `porthole keys rotate` against a real server. The
// credential is put in with `server.vault.put` on a session created through the API: the agent's
// delivery path is tested elsewhere.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import type { SessionId } from '../../src/protocol/ids.js';
import { providers } from '../../src/providers/index.js';
import { demoSignIn } from '../support/demo-sign-in.js';
import { startTestServer, testApiKey, type TestServer } from '../support/server.js';

const run = promisify(execFile);
const cli = new URL('../../src/cli/main.js', import.meta.url).pathname;
let t: TestServer;
let home = '';
let sessionId: SessionId;
let emptySessionId: SessionId;
// No trailing newline: `get` must print the file exactly, adding nothing.
const content = `{"claudeAiOauth":{"accessToken":"at-${randomBytes(8).toString('hex')}","refreshToken":"rt-${randomBytes(8).toString('hex')}","expiresAt":1900000000000}}`;

before(async () => {
  home = await mkdtemp(join(tmpdir(), 'porthole-test-cli-home-'));
  t = await startTestServer('cli-credentials');
  sessionId = (await t.api.createSession({})).id;
  emptySessionId = (await t.api.createSession({})).id;
  await t.server.vault.put(sessionId, { provider: 'claude-code', content, expiresAt: null, account: 'dave@example.com' });
});
after(async () => {
  await t?.stop();
  if (home) await rm(home, { recursive: true, force: true });
});

function porthole(args: string[]) {
  const env = { ...process.env, HOME: home, PORTHOLE_URL: t.server.url, PORTHOLE_API_KEY: testApiKey };
  return run(process.execPath, [cli, ...args], { env }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

test('credentials get prints exactly the file; the read is audited', async () => {
  const got = await porthole(['credentials', 'get', sessionId]);
  assert.equal(got.code, 0, got.stderr);
  assert.equal(got.stdout, content);
  const events = await t.server.store.listEvents(sessionId);
  assert.equal(events.filter((e) => e.type === 'credentials.read').length, 1);

  const none = await porthole(['credentials', 'get', emptySessionId]);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /CREDENTIALS_NOT_FOUND/);
  assert.equal(none.stdout, '');
});

test('credentials install writes where the provider CLI looks, mode 0600, and never overwrites without --force', async () => {
  const path = providers['claude-code'].installPath({ ...process.env, HOME: home });
  assert.ok(path.startsWith(home), path);

  const installed = await porthole(['credentials', 'install', sessionId]);
  assert.equal(installed.code, 0, installed.stderr);
  assert.ok(installed.stdout.includes(path), installed.stdout);
  assert.equal(await readFile(path, 'utf8'), content);
  assert.equal((await stat(path)).mode & 0o777, 0o600);

  await writeFile(path, 'the file the user already had');
  await chmod(path, 0o644);
  const refused = await porthole(['credentials', 'install', sessionId]);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /CREDENTIAL_FILE_EXISTS/);
  assert.ok(refused.stderr.includes(path), refused.stderr);
  assert.match(refused.stderr, /--force/);
  assert.equal(await readFile(path, 'utf8'), 'the file the user already had', 'left untouched');

  const forced = await porthole(['credentials', 'install', sessionId, '--force']);
  assert.equal(forced.code, 0, forced.stderr);
  assert.equal(await readFile(path, 'utf8'), content);
  assert.equal((await stat(path)).mode & 0o777, 0o600, 'the replaced file is 0600 too');
});

test('install warns that a second refresher breaks the grant; --access-only installs the access token alone, and token prints a fresh one', async () => {
  const warned = await porthole(['credentials', 'install', sessionId, '--force']);
  assert.equal(warned.code, 0, warned.stderr);
  assert.match(warned.stderr, /refresh token porthole keeps fresh[\s\S]*--access-only/);

  // A real demo grant: its access token is what userinfo takes.
  const issuer = t.server.demoOidc!.issuer;
  const demoSession = (await t.api.createSession({})).id;
  const signedIn = await demoSignIn(issuer);
  await t.server.vault.put(demoSession, { provider: 'demo', content: JSON.stringify(signedIn), expiresAt: signedIn.expires_at, account: 'demo@porthole.test' });
  const accessOnly = await porthole(['credentials', 'install', demoSession, '--access-only']);
  assert.equal(accessOnly.code, 0, accessOnly.stderr);
  assert.match(accessOnly.stdout, /without the refresh token[\s\S]*works until \d{4}-/);
  assert.doesNotMatch(accessOnly.stderr, /warning/);
  const path = providers.demo.installPath({ ...process.env, HOME: home });
  const installed = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  assert.equal(installed.refresh_token, undefined);
  assert.ok(!JSON.stringify(installed).includes(signedIn.refresh_token), 'the refresh token is nowhere in the file');
  assert.equal(installed.access_token, signedIn.access_token);

  const token = await porthole(['credentials', 'token', demoSession]);
  assert.equal(token.code, 0, token.stderr);
  assert.equal(token.stdout.trim(), signedIn.access_token);
  assert.match(token.stderr, /^expires \d{4}-/);
  const userinfo = await fetch(`${issuer}/me`, { headers: { authorization: `Bearer ${token.stdout.trim()}` } });
  assert.equal(userinfo.status, 200);
  const reads = (await t.server.store.listEvents(demoSession)).filter((e) => e.type === 'credentials.read');
  assert.deepEqual(
    reads.map((e) => e.details.part ?? 'file'),
    ['access-token', 'file', 'access-token'],
    'every hand-out is audited, the access token alone included',
  );
});

test('keys rotate re-encrypts through the server; the credential still reads', async () => {
  const rotated = await porthole(['keys', 'rotate']);
  assert.equal(rotated.code, 0, rotated.stderr);
  assert.match(rotated.stdout, /master key is now k_[0-9a-f]{16}; 2 stored credentials re-encrypted/);
  assert.equal((await porthole(['credentials', 'get', sessionId])).stdout, content);
});

test('a wrong command line exits 2 with the usage', async () => {
  for (const args of [['credentials'], ['credentials', 'get'], ['credentials', 'steal', sessionId], ['keys'], ['keys', 'burn']]) {
    const result = await porthole(args);
    assert.equal(result.code, 2, args.join(' '));
    assert.match(result.stderr, /porthole credentials get/);
  }
});
