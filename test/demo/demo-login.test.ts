import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import * as oidc from 'openid-client';
import type { Page } from 'playwright-core';
import { startDemoOidc, type DemoOidc } from '../../src/demo/oidc/demo-oidc.js';
import { demo, defaultDemoAccount, type DemoCredentials } from '../../src/providers/demo.js';
import { createLogger } from '../../src/server/logger.js';
import { launchBrowser } from '../support/browser.js';
import { startTestServer, testOutputDir } from '../support/server.js';
import { elapse, until } from '../support/until.js';

// The demo login end to end on the host, as a person does it in the sandbox: the bundled demo CLI
// runs, "opens the browser" (a BROWSER script that records the URL), a real Chromium signs in to the
// real OpenID Connect provider (a wrong password first), allows access, and the CLI writes its
// credential file — half first, then the rest — whose tokens the provider accepts.

const cliBundle = fileURLToPath(new URL('../../agent/porthole-demo-cli.mjs', import.meta.url));
const out = testOutputDir('demo');

let dir: string;
let provider: DemoOidc;
let logStream: WriteStream;
let logFile: string;
let browserHandle: Awaited<ReturnType<typeof launchBrowser>>;
const children: ChildProcess[] = [];

before(async () => {
  await mkdir(out, { recursive: true });
  dir = await mkdtemp(join(tmpdir(), 'porthole-test-demo-'));
  logFile = join(out, 'demo-oidc.log');
  logStream = createWriteStream(logFile);
  provider = await startDemoOidc({ port: 0, account: { ...defaultDemoAccount }, logger: createLogger('debug', logStream) });
  browserHandle = await launchBrowser();
});
after(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await browserHandle?.close();
  await provider?.close();
  await new Promise<void>((resolve) => (logStream ? logStream.end(resolve) : resolve()));
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface CliRun {
  home: string;
  /** Resolves with the first URL the CLI asked the browser to open. */
  openedUrl: Promise<string>;
  exited: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

/** Runs the bundled CLI as the agent would, with a BROWSER that writes the URL it is given to a file. */
async function runCli(name: string): Promise<CliRun> {
  const home = join(dir, name, 'credentials');
  const urlFile = join(dir, name, 'opened-url');
  const browserScript = join(dir, name, 'browser.sh');
  await mkdir(join(dir, name), { recursive: true });
  await writeFile(browserScript, `#!/bin/sh\nprintf '%s\\n' "$1" > "${urlFile}.tmp" && mv "${urlFile}.tmp" "${urlFile}"\n`);
  await chmod(browserScript, 0o755);
  const child = spawn(process.execPath, [cliBundle, 'login'], {
    env: {
      PATH: process.env.PATH,
      HOME: join(dir, name),
      BROWSER: browserScript,
      ...demo.env({
        home: join(dir, name),
        credentialDir: home,
        cliDir: '/nonexistent',
        openUrlCommand: browserScript,
        demo: { issuer: provider.issuer, clientId: provider.clientId },
      }),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk) => (stdout += chunk));
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (code) => resolve({ code, stdout, stderr })),
  );
  const openedUrl = until(
    'the CLI opens a browser',
    async () => {
      const text = (await readFile(urlFile, 'utf8').catch(() => '')).trim();
      if (!text && child.exitCode !== null) throw new Error(`the CLI exited ${child.exitCode} before opening a browser`);
      return text;
    },
    (text) => text !== '',
    20_000,
    { intervalMs: 50 },
  ).catch((error: Error) => {
    throw new Error(`${error.message}: ${stdout}${stderr}`, { cause: error });
  });
  return { home, openedUrl, exited };
}

/** Reads the credential file as often as a watcher might, recording what each read looked like. */
function watchFile(path: string): { stop(): string[] } {
  const seen: string[] = [];
  let isWatching = true;
  void (async () => {
    while (isWatching) {
      const content = await readFile(path, 'utf8').catch(() => null);
      if (content !== null) {
        const check = demo.validate(content);
        const label = check.ok ? 'ok' : check.waitingFor;
        if (seen.at(-1) !== label) seen.push(label);
      }
      await elapse(15, 'a watcher reads the file every so often, not in a busy loop');
    }
  })();
  return {
    stop() {
      isWatching = false;
      return seen;
    },
  };
}

async function signIn(page: Page, email: string, password: string): Promise<void> {
  await page.getByLabel('E-mail').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

test('the demo CLI signs in through a real browser; its tokens are accepted', async () => {
  const run = await runCli('login');
  const url = new URL(await run.openedUrl);
  assert.equal(url.origin, provider.issuer);
  assert.equal(url.pathname, demo.authorizeUrl?.path);
  assert.equal(url.searchParams.get('code_challenge_method'), 'S256');
  assert.ok(url.searchParams.get('state'));
  assert.match(url.searchParams.get('redirect_uri') ?? '', /^http:\/\/127\.0\.0\.1:\d+\/callback$/);

  const page = await browserHandle.browser.newPage({ viewport: { width: 1000, height: 760 } });
  try {
    await page.goto(url.href);
    assert.match(await page.title(), /porthole demo/);
    await page.getByRole('heading', { name: 'porthole demo' }).waitFor();
    // The e-mail field has the focus on arrival, so a person can start typing.
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'email');
    await page.screenshot({ path: join(out, 'login.png') });

    // A wrong password: the page says so, keeps the e-mail and lets the person try again.
    await signIn(page, defaultDemoAccount.email, 'not-the-password');
    await page.getByRole('alert').waitFor();
    assert.match((await page.getByRole('alert').textContent()) ?? '', /Wrong e-mail or password/);
    assert.equal(await page.getByLabel('E-mail').inputValue(), defaultDemoAccount.email);
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'password');
    await page.screenshot({ path: join(out, 'login-wrong-password.png') });

    await signIn(page, defaultDemoAccount.email, defaultDemoAccount.password);
    await page.getByRole('button', { name: 'Allow' }).waitFor();
    assert.match(await page.title(), /porthole demo/);
    assert.match((await page.textContent('body')) ?? '', /porthole demo CLI/);
    assert.match((await page.textContent('body')) ?? '', /demo@porthole\.test/);
    await page.screenshot({ path: join(out, 'consent.png') });

    const watcher = watchFile(join(run.home, 'credentials.json'));
    await page.getByRole('button', { name: 'Allow' }).click();
    await page.getByText('You are signed in.').waitFor();
    await page.screenshot({ path: join(out, 'signed-in.png') });
    const result = await run.exited;
    const seen = watcher.stop();
    assert.equal(result.code, 0, `CLI: ${result.stdout}${result.stderr}`);
    assert.match(result.stdout, /Opening your browser…/);
    assert.match(result.stdout, /If the browser does not open, visit:/);
    assert.match(result.stdout, /Waiting for you to sign in…/);
    assert.match(result.stdout, /Signed in as demo@porthole\.test\./);
    // Written in two parts: a watcher first meets a half-written file.
    assert.deepEqual(seen.slice(-2), ['complete JSON', 'ok'], `reads saw: ${seen.join(' → ')}`);
  } finally {
    await page.close();
  }

  const text = await readFile(join(run.home, 'credentials.json'), 'utf8');
  const credentials = JSON.parse(text) as DemoCredentials;
  assert.deepEqual(
    Object.keys(credentials).sort(),
    ['access_token', 'account', 'client_id', 'expires_at', 'id_token', 'issuer', 'refresh_token', 'scope', 'token_type'].sort(),
  );
  assert.equal(credentials.issuer, provider.issuer);
  assert.equal(credentials.client_id, 'porthole-demo-cli');
  assert.equal(credentials.account.email, defaultDemoAccount.email);
  assert.match(credentials.account.sub, /^demo-[0-9a-f]{16}$/);
  assert.equal(credentials.token_type.toLowerCase(), 'bearer');
  assert.deepEqual(credentials.scope.split(' ').sort(), ['email', 'offline_access', 'openid', 'profile']);
  const expiresInMs = Date.parse(credentials.expires_at) - Date.now();
  assert.ok(expiresInMs > 50 * 60_000 && expiresInMs <= 60 * 60_000, credentials.expires_at);
  assert.deepEqual(demo.validate(text), { ok: true, expiresAt: credentials.expires_at, account: defaultDemoAccount.email });

  // The provider's userinfo endpoint accepts the access token and refuses a made-up one.
  const discovery = (await (await fetch(`${provider.issuer}/.well-known/openid-configuration`)).json()) as { userinfo_endpoint: string };
  const userinfo = await fetch(discovery.userinfo_endpoint, { headers: { authorization: `Bearer ${credentials.access_token}` } });
  assert.equal(userinfo.status, 200);
  assert.deepEqual(await userinfo.json(), { sub: credentials.account.sub, email: defaultDemoAccount.email, email_verified: true, name: 'porthole demo user' });
  const garbage = await fetch(discovery.userinfo_endpoint, { headers: { authorization: 'Bearer not-a-real-token-0123456789' } });
  assert.equal(garbage.status, 401);
  assert.match(garbage.headers.get('www-authenticate') ?? '', /invalid_token/);

  // The refresh token works, as the platform that receives it will use it.
  const config = await oidc.discovery(new URL(provider.issuer), provider.clientId, undefined, oidc.None(), { execute: [oidc.allowInsecureRequests] });
  const refreshed = await oidc.refreshTokenGrant(config, credentials.refresh_token);
  assert.ok(refreshed.access_token && refreshed.access_token !== credentials.access_token);

  // Nothing secret reached the provider's log, which holds everything up to the refresh once it holds that.
  const log = await until(
    "the demo provider's log of the refresh",
    () => readFile(logFile, 'utf8'),
    (text) => /"grantType":"refresh_token".*"msg":"demo provider: tokens issued"/.test(text),
    5_000,
    { intervalMs: 20 },
  );
  assert.match(log, /demo provider: sign-in refused/);
  for (const secret of [
    defaultDemoAccount.password,
    'not-the-password',
    credentials.access_token,
    credentials.refresh_token,
    credentials.id_token,
    refreshed.access_token,
  ]) {
    assert.ok(!log.includes(secret), 'a secret is in the demo provider log');
  }
});

test('cancelling on the consent page ends the CLI with an explanation and no file', async () => {
  const run = await runCli('cancel');
  const page = await browserHandle.browser.newPage();
  try {
    await page.goto(await run.openedUrl);
    await signIn(page, defaultDemoAccount.email.toUpperCase(), defaultDemoAccount.password);
    await page.getByRole('button', { name: 'Cancel' }).click();
    await page.getByText('Sign-in did not complete.').waitFor();
  } finally {
    await page.close();
  }
  const result = await run.exited;
  assert.equal(result.code, 1);
  assert.match(result.stderr, /Sign-in failed: the sign-in was cancelled in the browser\./);
  await assert.rejects(readFile(join(run.home, 'credentials.json')), { code: 'ENOENT' });
});

test('the porthole server starts the demo provider on loopback and closes it with itself', async () => {
  const t = await startTestServer('demo-server');
  let issuer: string;
  try {
    assert.ok(t.server.demoOidc);
    issuer = t.server.demoOidc.issuer;
    assert.match(issuer, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(t.server.demoOidc.clientId, 'porthole-demo-cli');
    const discovery = (await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
    assert.equal(discovery.issuer, issuer);
    assert.equal(discovery.authorization_endpoint, `${issuer}/auth`);
    assert.deepEqual(discovery.code_challenge_methods_supported, ['S256']);
  } finally {
    await t.stop();
  }
  await assert.rejects(fetch(`${issuer}/.well-known/openid-configuration`));

  const off = await startTestServer('demo-server-off', { PORTHOLE_DEMO_PROVIDER: 'false' });
  try {
    assert.equal(off.server.demoOidc, null);
  } finally {
    await off.stop();
  }
});
