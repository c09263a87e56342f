import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { startDemoOidc, type DemoOidc } from '../../src/demo/oidc/demo-oidc.js';
import { defaultDemoAccount, demo, formatDemoCredentials, type DemoCredentials } from '../../src/providers/demo.js';
import type { RefreshOutcome, VerifyContext } from '../../src/providers/provider.js';
import { createLogger } from '../../src/server/logger.js';
import { demoSignIn } from '../support/demo-sign-in.js';
import { testOutputDir } from '../support/server.js';
import { until } from '../support/until.js';

// The demo provider refreshed as a real provider is: a real OpenID Connect provider whose access
// tokens live two seconds, whose refresh tokens rotate on every use and end the whole grant when one
// is used twice, and whose revocation endpoint ends the grant too. porthole's refresh
// (`demo.refresh`) and the demo CLI's own (`run whoami`) both meet it.

const accessTokenTtlSeconds = 2;
const cliBundle = fileURLToPath(new URL('../../agent/porthole-demo-cli.mjs', import.meta.url));

let dir: string;
/** Access tokens live two seconds. */
let provider: DemoOidc;
/** Access tokens live an hour: for what must not need a refresh. */
let slowProvider: DemoOidc;
let logStream: WriteStream;
let context: VerifyContext;
const children: ChildProcess[] = [];

before(async () => {
  const out = testOutputDir('demo-refresh');
  await mkdir(out, { recursive: true });
  dir = await mkdtemp(join(tmpdir(), 'porthole-test-demo-refresh-'));
  logStream = createWriteStream(join(out, 'demo-oidc.log'));
  const logger = createLogger('debug', logStream);
  provider = await startDemoOidc({ port: 0, account: { ...defaultDemoAccount }, logger, accessTokenTtlSeconds });
  slowProvider = await startDemoOidc({ port: 0, account: { ...defaultDemoAccount }, logger });
  context = { demo: { issuer: provider.issuer, clientId: provider.clientId }, fetch, signal: AbortSignal.timeout(60_000) };
});
after(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await provider?.close();
  await slowProvider?.close();
  await new Promise<void>((resolve) => (logStream ? logStream.end(resolve) : resolve()));
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface Endpoints {
  readonly token_endpoint: string;
  readonly userinfo_endpoint: string;
  readonly revocation_endpoint: string;
}

async function endpoints(issuer: string): Promise<Endpoints> {
  return (await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()) as Endpoints;
}

/** userinfo's status for an access token: 200 while it is live. */
async function userinfoStatus(accessToken: string, issuer = provider.issuer): Promise<number> {
  const response = await fetch((await endpoints(issuer)).userinfo_endpoint, { headers: { authorization: `Bearer ${accessToken}` } });
  await response.arrayBuffer();
  return response.status;
}

/** Waits for the access token's two seconds to pass, as userinfo sees it. */
async function untilExpired(accessToken: string): Promise<void> {
  await until(
    'the access token expires',
    () => userinfoStatus(accessToken),
    (status) => status === 401,
    10_000,
    { intervalMs: 250 },
  );
}

function parse(outcome: RefreshOutcome): DemoCredentials {
  assert.equal(outcome.ok, true, JSON.stringify(outcome));
  if (!outcome.ok) throw new Error('unreachable');
  return JSON.parse(outcome.content) as DemoCredentials;
}

/** Neither a refusal's reason nor a CLI's output may carry a token. */
function assertNoTokens(text: string, ...files: DemoCredentials[]): void {
  for (const file of files) {
    for (const token of [file.access_token, file.refresh_token, file.id_token]) assert.ok(!text.includes(token), `a token in: ${text}`);
  }
}

test('refresh: a new access token userinfo accepts, a rotated refresh token, the file otherwise as the CLI wrote it', async () => {
  const signedIn = await demoSignIn(provider.issuer);
  const content = formatDemoCredentials(signedIn);
  await untilExpired(signedIn.access_token);

  const outcome = await demo.refresh(content, context);
  const refreshed = parse(outcome);
  assert.notEqual(refreshed.access_token, signedIn.access_token);
  assert.notEqual(refreshed.refresh_token, signedIn.refresh_token, 'the refresh token rotates');
  assert.notEqual(refreshed.id_token, signedIn.id_token, 'a new ID token comes with it');
  assert.equal(await userinfoStatus(refreshed.access_token), 200);
  // Same keys in the same order, same account, issuer and client: only the tokens and expiry moved.
  assert.deepEqual(Object.keys(refreshed), Object.keys(signedIn));
  assert.deepEqual(refreshed.account, signedIn.account);
  assert.equal(refreshed.issuer, provider.issuer);
  assert.equal(refreshed.client_id, provider.clientId);
  assert.equal(refreshed.token_type, 'bearer');
  const expiresInMs = Date.parse(refreshed.expires_at) - Date.now();
  assert.ok(expiresInMs > 0 && expiresInMs <= accessTokenTtlSeconds * 1000, refreshed.expires_at);
  assert.equal(outcome.ok && outcome.expiresAt, refreshed.expires_at);
  assert.ok(outcome.ok && outcome.content.endsWith('}\n'));
  assert.deepEqual(demo.validate(outcome.ok ? outcome.content : ''), { ok: true, expiresAt: refreshed.expires_at, account: defaultDemoAccount.email });
  // The access token as porthole hands it out: never the refresh token.
  assert.deepEqual(demo.accessToken(outcome.ok ? outcome.content : ''), {
    accessToken: refreshed.access_token,
    expiresAt: refreshed.expires_at,
    tokenType: 'Bearer',
  });
  // The refreshed file still passes the server's check of a delivered file (the new refresh token is live).
  const verdict = await demo.verify(formatDemoCredentials(refreshed), context);
  assert.equal(verdict.ok, true, JSON.stringify(verdict));

  // And it refreshes again: the rotated refresh token is the one that works now.
  const again = parse(await demo.refresh(formatDemoCredentials(refreshed), context));
  assert.notEqual(again.refresh_token, refreshed.refresh_token);
});

test('a refresh token used twice ends the grant: invalid_grant, then the newest refresh token is refused too', async () => {
  const signedIn = await demoSignIn(provider.issuer);
  const content = formatDemoCredentials(signedIn);
  const first = parse(await demo.refresh(content, context));

  // The rotated-away token again: a copy that leaked, or a second refresher of the same grant.
  const reused = await demo.refresh(content, context);
  assert.equal(reused.ok, false);
  if (reused.ok) return;
  assert.equal(reused.refused, true, reused.reason);
  assert.match(reused.reason, /invalid_grant/);
  assertNoTokens(reused.reason, signedIn, first);

  const newest = await demo.refresh(formatDemoCredentials(first), context);
  assert.equal(newest.ok, false);
  if (newest.ok) return;
  assert.equal(newest.refused, true, `the whole grant is revoked: ${newest.reason}`);
  assert.match(newest.reason, /invalid_grant/);
  assert.equal(await userinfoStatus(first.access_token), 401, 'its access tokens go with it');
});

test('revoking the refresh token at the revocation endpoint ends the grant: the next refresh is refused', async () => {
  const signedIn = await demoSignIn(provider.issuer);
  const revoked = await fetch((await endpoints(provider.issuer)).revocation_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token: signedIn.refresh_token, token_type_hint: 'refresh_token', client_id: provider.clientId }).toString(),
  });
  assert.equal(revoked.status, 200, await revoked.text());
  assert.equal(await userinfoStatus(signedIn.access_token), 401, 'the grant’s access token is revoked with it');

  const outcome = await demo.refresh(formatDemoCredentials(signedIn), context);
  assert.equal(outcome.ok, false);
  if (outcome.ok) return;
  assert.equal(outcome.refused, true, outcome.reason);
  assert.match(outcome.reason, /invalid_grant/);
  assertNoTokens(outcome.reason, signedIn);
});

test('with the demo provider off or an issuer that does not answer: not refused; a file of another issuer: refused; nothing sent to it', async () => {
  const signedIn = await demoSignIn(provider.issuer);
  const content = formatDemoCredentials(signedIn);
  const asked: string[] = [];
  const spy: typeof fetch = (input, init) => {
    asked.push(String(input));
    return fetch(input, init);
  };
  const signal = AbortSignal.timeout(30_000);

  const off = await demo.refresh(content, { fetch: spy, signal });
  assert.deepEqual(off, { ok: false, refused: false, reason: 'the demo provider is switched off on this server' });

  // The file names this provider, but this server trusts another: the file's issuer is never asked.
  const foreign = await demo.refresh(content, { demo: { issuer: slowProvider.issuer, clientId: slowProvider.clientId }, fetch: spy, signal });
  assert.equal(foreign.ok, false);
  if (!foreign.ok) {
    // The demo provider keeps grants in memory: another issuer's grant cannot be refreshed here, ever.
    assert.equal(foreign.refused, true);
    assert.match(foreign.reason, /issued by another demo provider than this server’s/);
  }
  const elsewhere = formatDemoCredentials({ ...signedIn, issuer: 'http://127.0.0.1:9' });
  const named = await demo.refresh(elsewhere, { ...context, fetch: spy });
  assert.equal(named.ok === false && named.refused, true);
  assert.deepEqual(asked, [], 'no request for a file porthole will not refresh');

  // The issuer this server runs is down: try again later, the grant may be fine.
  const down = await demo.refresh(formatDemoCredentials({ ...signedIn, issuer: 'http://127.0.0.1:9' }), {
    demo: { issuer: 'http://127.0.0.1:9', clientId: provider.clientId },
    fetch,
    signal,
  });
  assert.equal(down.ok, false);
  if (!down.ok) {
    assert.equal(down.refused, false);
    assert.match(down.reason, /could not be asked/);
  }
  assert.equal(demo.accessToken('not json'), null);
  assert.equal((await demo.refresh('not json', context)).ok, false);
  // The untouched grant still refreshes.
  assert.equal((await demo.refresh(content, context)).ok, true);
});

interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** The bundled demo CLI's `run whoami` against a credential file in `home`, with the environment porthole gives it. */
async function runWhoami(home: string, issuer: string): Promise<CliResult> {
  const child = spawn(process.execPath, [cliBundle, 'run', 'whoami'], {
    env: {
      PATH: process.env.PATH,
      HOME: dir,
      ...demo.env({
        home: dir,
        credentialDir: home,
        cliDir: '/nonexistent',
        openUrlCommand: '/bin/false',
        demo: { issuer, clientId: provider.clientId },
      }),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk) => (stdout += chunk));
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  clearTimeout(timer);
  return { code, stdout, stderr };
}

async function homeWith(name: string, file: DemoCredentials): Promise<string> {
  const home = join(dir, name);
  await mkdir(home, { recursive: true });
  await writeFile(join(home, 'credentials.json'), formatDemoCredentials(file), { mode: 0o600 });
  return home;
}

test('the demo CLI’s run whoami prints the account with a live access token, and leaves the file alone', async () => {
  const signedIn = await demoSignIn(slowProvider.issuer);
  const home = await homeWith('cli-live', signedIn);
  const result = await runWhoami(home, slowProvider.issuer);
  assert.equal(result.code, 0, `${result.stdout}${result.stderr}`);
  assert.match(result.stdout, new RegExp(`^signed in as demo@porthole\\.test \\(sub ${signedIn.account.sub}\\)$`, 'm'));
  assert.doesNotMatch(result.stdout, /refreshed/);
  assertNoTokens(result.stdout + result.stderr, signedIn);
  assert.equal(await readFile(join(home, 'credentials.json'), 'utf8'), formatDemoCredentials(signedIn));
});

test('the demo CLI refreshes an expired access token itself, rotating the refresh token, and rewrites the file', async () => {
  const signedIn = await demoSignIn(provider.issuer);
  const home = await homeWith('cli-expired', signedIn);
  await untilExpired(signedIn.access_token);

  const result = await runWhoami(home, provider.issuer);
  assert.equal(result.code, 0, `${result.stdout}${result.stderr}`);
  assert.match(result.stdout, /The access token had expired: refreshed the sign-in\./);
  assert.match(result.stdout, /^signed in as demo@porthole\.test \(sub demo-[0-9a-f]{16}\)$/m);

  const text = await readFile(join(home, 'credentials.json'), 'utf8');
  const rewritten = JSON.parse(text) as DemoCredentials;
  assertNoTokens(result.stdout + result.stderr, signedIn, rewritten);
  assert.notEqual(rewritten.access_token, signedIn.access_token);
  assert.notEqual(rewritten.refresh_token, signedIn.refresh_token);
  assert.deepEqual(Object.keys(rewritten), Object.keys(signedIn), 'the same format');
  assert.deepEqual(rewritten.account, signedIn.account);
  assert.equal(text, formatDemoCredentials(rewritten));
  assert.equal((await stat(join(home, 'credentials.json'))).mode & 0o777, 0o600);
  assert.equal(demo.validate(text).ok, true);
  // The old refresh token is spent: porthole holding it now would end the grant (the single-refresher rule).
  const stale = await demo.refresh(formatDemoCredentials(signedIn), context);
  assert.equal(stale.ok === false && stale.refused, true);
});

test('the demo CLI says so, without a token, when its refresh is refused', async () => {
  const signedIn = await demoSignIn(provider.issuer);
  const home = await homeWith('cli-revoked', signedIn);
  const response = await fetch((await endpoints(provider.issuer)).revocation_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token: signedIn.refresh_token, client_id: provider.clientId }).toString(),
  });
  assert.equal(response.status, 200);

  // The access token is revoked with the grant: userinfo says 401, the CLI tries its refresh, which is refused.
  const result = await runWhoami(home, provider.issuer);
  assert.equal(result.code, 1, `${result.stdout}${result.stderr}`);
  assert.match(result.stderr, /refused the refresh/);
  assert.match(result.stderr, /Sign in again: porthole-demo-cli login/);
  assertNoTokens(result.stdout + result.stderr, signedIn);
  assert.equal(await readFile(join(home, 'credentials.json'), 'utf8'), formatDemoCredentials(signedIn), 'the file is left as it was');
});
