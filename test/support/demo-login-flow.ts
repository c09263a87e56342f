import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import type { SessionId } from '../../src/protocol/ids.js';
import { buttonBox, canvasToPage, centreOf, fieldsAbove, isPastSignIn } from './canvas-sign-in.js';
import { sandboxRemains } from './faults.js';
import { testApiKey, type TestServer } from './server.js';
import { elapse, until } from './until.js';

// The whole purpose, end to end, in a real browser and with nothing done behind the viewer's back:
// the dashboard connects the demo provider; the demo CLI starts in the sandbox's terminal and opens
// porthole's OpenID Connect login in the sandbox's Chromium; this flow signs in by clicking and
// typing through the noVNC canvas (the password goes in through the viewer's Paste action); the
// agent captures the credential file and delivers it; the session completes, the viewer says
// "Connected", the sandbox is gone, and the token the provider issued comes back from the
// credentials API, works at the provider's userinfo endpoint, and rests nowhere in plaintext.
// One flow for every driver (test/e2e/demo-login.test.ts: local; gvisor-demo-login.test.ts).

export interface DemoAccount {
  readonly email: string;
  readonly password: string;
}

/** When each step was reached, in ms from pressing "Connect provider". */
export interface DemoLoginTimings {
  readonly connectedMs: number;
  readonly loginPageMs: number;
  readonly completedMs: number;
  readonly sandboxGoneMs: number;
}

async function filesContaining(dir: string, needle: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    const content = await readFile(path).catch(() => null);
    if (content?.includes(needle)) found.push(path);
  }
  return found;
}

/**
 * Signs in to the demo provider through the canvas of a server started with this `account`
 * (PORTHOLE_DEMO_EMAIL, PORTHOLE_DEMO_PASSWORD) and checks everything after: completed, captured,
 * verified, sealed, the sandbox gone. Screenshots of each step go to `out`.
 */
export async function demoLoginThroughCanvas(t: TestServer, browser: Browser, account: DemoAccount, out: string): Promise<DemoLoginTimings> {
  const { email, password } = account;
  const context = await browser.newContext({ viewport: { width: 1400, height: 960 } });
  try {
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: t.server.url });
    const p = await context.newPage();
    await p.goto(t.server.loginUrl);

    // Dashboard: "Connect provider" with the demo first.
    assert.equal(await p.inputValue('#new-provider'), 'demo', 'the demo provider is offered first');
    const startedAt = Date.now();
    await p.click('#new-session');
    await p.waitForURL(/\/v1\/sessions\/ses_[0-9a-z]+\/viewer/, { timeout: 15_000 });
    await p.waitForSelector('body[data-phase=connected]', { timeout: 60_000 });
    const connectedMs = Date.now() - startedAt;
    const sessionId = await p.evaluate(() => (window as any).porthole.sessionId as string);
    assert.equal((await t.api.getSession(sessionId)).provider, 'demo');

    // The demo CLI opened the provider's login page in the sandbox's Chromium: its blue button shows.
    const signIn = await until(
      'the login page in the canvas',
      () => buttonBox(p),
      (box) => box !== null,
      60_000,
      { onTimeout: () => p.screenshot({ path: `${out}/1-no-login-page.png` }) },
    );
    const loginPageMs = Date.now() - startedAt;
    await p.screenshot({ path: `${out}/1-login-page.png` });
    const toPage = await canvasToPage(p);
    const [passwordField, emailField] = await fieldsAbove(p, signIn!);
    assert.ok(passwordField && emailField, 'found the e-mail and password fields above the button');

    // E-mail: click the field in the canvas, type.
    let at = toPage(emailField);
    await p.mouse.click(at.x, at.y);
    await p.keyboard.press('Control+A');
    await p.keyboard.type(email, { delay: 30 });
    await elapse(1_000, 'the sandbox’s Chromium takes every key before the focus moves');
    // Password: click the field, then the viewer's Paste action with the password on the clipboard.
    at = toPage(passwordField);
    await p.mouse.click(at.x, at.y);
    await p.evaluate((text) => navigator.clipboard.writeText(text), password);
    await p.click('#paste');
    await p.waitForSelector(`#status:has-text("Typed ${password.length}")`, { timeout: 10_000 });
    await elapse(1_000, 'the sandbox’s Chromium takes the typed keys');
    await p.screenshot({ path: `${out}/2-filled.png` });
    // Sign in: click the button.
    at = toPage(centreOf(signIn!));
    await p.mouse.click(at.x, at.y);

    // Consent: the page changes (the button moves), then "Allow".
    const allow = await until('the consent page in the canvas', () => buttonBox(p), isPastSignIn(signIn!), 30_000).catch(async (error: unknown) => {
      await p.screenshot({ path: `${out}/3-no-consent.png` });
      throw error;
    });
    await p.screenshot({ path: `${out}/3-consent.png` });
    at = toPage(centreOf(allow!));
    await p.mouse.click(at.x, at.y);

    // The agent captures and delivers; the viewer says so, not a dropped connection.
    await p.waitForSelector('body[data-phase=completed]', { timeout: 60_000 });
    const completedMs = Date.now() - startedAt;
    await p.screenshot({ path: `${out}/4-connected.png` });
    assert.equal(await p.evaluate(() => document.body.dataset.closeCode), '1000');
    assert.equal(await p.evaluate(() => document.body.dataset.closeReason), 'completed');
    // On porthole's own page (not framed in an app's), the person is told the page may be closed.
    assert.equal(await p.textContent('#status'), `Connected to porthole demo as ${email}. You can close this page.`);

    const session = await t.api.getSession(sessionId);
    assert.equal(session.state, 'completed');
    assert.equal(session.credential?.account, email);
    assert.equal(session.credential?.verification, 'verified', 'the server asked the demo provider, which named the account');
    await until(
      'the sandbox is destroyed',
      () => t.server.driver.list(),
      (list) => list.length === 0,
      15_000,
    );
    const sandboxGoneMs = Date.now() - startedAt;
    assert.deepEqual(await sandboxRemains(t, session.sandboxId!), [], 'nothing of the sandbox remains');

    // The credentials API returns what the provider issued; the provider accepts that token.
    const response = await fetch(`${t.server.url}/v1/sessions/${sessionId}/credentials`, { headers: { authorization: `Bearer ${testApiKey}` } });
    assert.equal(response.status, 200);
    const credentials = (await response.json()) as { provider: string; file: string; account: string | null };
    assert.equal(credentials.provider, 'demo');
    const file = JSON.parse(credentials.file) as { access_token: string; refresh_token: string };
    const discovery = (await (await fetch(`${t.server.demoOidc!.issuer}/.well-known/openid-configuration`)).json()) as { userinfo_endpoint: string };
    const userinfo = await fetch(discovery.userinfo_endpoint, { headers: { authorization: `Bearer ${file.access_token}` } });
    assert.equal(userinfo.status, 200, 'the provider accepts the captured access token');
    assert.equal(((await userinfo.json()) as { email: string }).email, email);
    const { events } = await t.api.listEvents(sessionId);
    assert.ok(
      events.some((e) => e.type === 'credentials.read'),
      'the read is audited',
    );
    assert.ok(
      events.some((e) => e.type === 'login.browser_opened'),
      'the timeline shows the browser hand-off',
    );

    // No plaintext copy at rest or in the logs.
    const sealed = await t.server.store.getCredential(sessionId as SessionId);
    assert.ok(sealed, 'the store holds the sealed credential');
    for (const field of [sealed.ciphertext, sealed.nonce, sealed.tag]) assert.equal(field.includes(file.access_token), false);
    for (const secret of [file.access_token, file.refresh_token, password]) {
      assert.deepEqual(await filesContaining(t.dataDir, secret), [], 'the data directory (database included) holds no plaintext copy');
      assert.equal((await readFile(t.logFile, 'utf8')).includes(secret), false, 'the server log holds no copy');
    }
    return { connectedMs, loginPageMs, completedMs, sandboxGoneMs };
  } finally {
    await context.close();
  }
}
