import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import type { BrowserContext } from 'playwright-core';
import { launchBrowser } from '../support/browser.js';
import { demoSignIn } from '../support/demo-sign-in.js';
import { startTestServer, testOutputDir, type TestServer } from '../support/server.js';
import { elapse, until } from '../support/until.js';

// The dashboard's "Connect provider" choice and what it shows about captured credentials, and the
// viewer's last word when a session completes (the server closes it with 1000 `completed`): who is
// connected to what — not a dropped connection, and no reconnecting.

let t: TestServer;
let browserHandle: Awaited<ReturnType<typeof launchBrowser>>;
/** Signed in to the dashboard once: the login link works one time. */
let dashboard: BrowserContext;
const out = testOutputDir('e2e-dashboard-providers');

before(async () => {
  await mkdir(out, { recursive: true });
  t = await startTestServer('e2e-dashboard-providers');
  browserHandle = await launchBrowser();
  dashboard = await browserHandle.browser.newContext({ viewport: { width: 1280, height: 800 } });
  const p = await dashboard.newPage();
  await p.goto(t.server.loginUrl);
  await p.close();
});
after(async () => {
  await browserHandle?.close();
  await t?.stop();
});

test('"Connect provider" offers the providers, demo first, and creates a session with the chosen one', async () => {
  const p = await dashboard.newPage();
  await p.goto(`${t.server.url}/`);
  const select = p.getByLabel('Connect provider');
  const options = await select.locator('option').evaluateAll((all) => all.map((o) => [(o as HTMLOptionElement).value, o.textContent]));
  assert.deepEqual(options, [
    ['demo', 'porthole demo'],
    ['claude-code', 'Claude Code'],
    ['codex', 'Codex'],
    ['gemini-cli', 'Gemini CLI'],
    ['', 'Desktop only (no sign-in)'],
  ]);
  assert.equal(await select.inputValue(), 'demo', 'the porthole demo is the default');
  await p.screenshot({ path: `${out}/dashboard-connect.png` });

  await select.selectOption('codex');
  await p.getByRole('button', { name: 'Connect' }).click();
  await p.waitForURL(/\/v1\/sessions\/ses_[0-9a-z]+\/viewer/, { timeout: 15_000 });
  const sessionId = /\/v1\/sessions\/([^/]+)\/viewer/.exec(new URL(p.url()).pathname)![1]!;
  assert.equal((await t.api.getSession(sessionId)).provider, 'codex', 'the session was created with the chosen provider');
  await t.api.endSession(sessionId);
  await p.close();
});

test('a session holding a credential shows its account and expiry on the dashboard', async () => {
  const session = await t.api.createSession({});
  const expiresAt = new Date(Date.now() + 55 * 60_000).toISOString();
  await t.server.vault.put(session.id, { provider: 'claude-code', content: '{"claudeAiOauth":{}}', expiresAt, account: 'alice@example.com' });
  const expired = await t.api.createSession({});
  await t.server.vault.put(expired.id, { provider: 'gemini-cli', content: '{}', expiresAt: new Date(Date.now() - 2 * 3_600_000).toISOString(), account: null });

  assert.equal((await t.api.getSession(session.id)).credential?.account, 'alice@example.com', 'the API carries the credential summary');
  const p = await dashboard.newPage();
  await p.goto(`${t.server.url}/`);
  const errors: string[] = [];
  p.on('console', (message) => message.type() === 'error' && errors.push(message.text()));
  p.on('pageerror', (error) => errors.push(String(error)));
  const cell = p.locator(`tr[data-session-id="${session.id}"] td[data-label=Credential]`);
  await cell
    .getByText('alice@example.com')
    .waitFor({ timeout: 10_000 })
    .catch(async (error: unknown) => {
      await p.screenshot({ path: `${out}/timeout-credential.png` });
      throw new Error(`${String(error)}; page errors: ${errors.join(' | ')}`);
    });
  const text = (await cell.textContent()) ?? '';
  assert.match(text, /expires .*in 5\d min/, text);
  // Put without saying how it was checked: only offline checks, so the account is marked unconfirmed.
  assert.match(text, /alice@example\.comunconfirmed/, text);
  assert.match((await cell.locator('.unverified').getAttribute('title')) ?? '', /not confirmed with Claude Code/);
  assert.equal(await cell.locator('time').getAttribute('datetime'), expiresAt);
  const expiredCell = p.locator(`tr[data-session-id="${expired.id}"] td[data-label=Credential]`);
  assert.match((await expiredCell.textContent()) ?? '', /Gemini CLI account.*expired .*2 h ago/);
  const noCredential = (await t.api.createSession({})).id;
  await p.locator(`tr[data-session-id="${noCredential}"]`).waitFor({ timeout: 10_000 });
  assert.equal(await p.locator(`tr[data-session-id="${noCredential}"] td[data-label=Credential]`).textContent(), '—');
  await p.screenshot({ path: `${out}/dashboard-credentials.png` });

  await p.setViewportSize({ width: 390, height: 844 });
  await p.screenshot({ path: `${out}/dashboard-credentials-phone.png`, fullPage: true });
  for (const id of [session.id, expired.id, noCredential]) await t.api.endSession(id);
  await p.close();
});

test('when the session completes, the viewer says who is connected and does not reconnect', async () => {
  const session = await t.readySession({ provider: 'demo' });
  const context = await browserHandle.browser.newContext({ viewport: { width: 1280, height: 800 } });
  const p = await context.newPage();
  const { viewerUrl } = await t.api.createTicket(session.id);
  await p.goto(viewerUrl);
  await p.waitForSelector('body[data-phase=connected]', { timeout: 60_000 });

  // What the agent does after the demo login: deliver the credential file. Real tokens from the
  // server's demo provider (the server verifies them with it; made-up ones would fail the session).
  const credentials = await demoSignIn(t.server.demoOidc!.issuer);
  await t.server.sessions.complete(session.id, {
    provider: 'demo',
    file: 'credentials.json',
    content: JSON.stringify(credentials),
    expiresAt: credentials.expires_at,
    account: null,
  });

  await p.waitForSelector('body[data-phase=completed]', { timeout: 15_000 });
  assert.equal(await p.evaluate(() => document.body.dataset.closeCode), '1000');
  assert.equal(await p.evaluate(() => document.body.dataset.closeReason), 'completed');
  await until(
    'the sentence names the provider and account',
    () => p.textContent('#panel-sentence'),
    (s) => /porthole demo as demo@porthole\.test/.test(s ?? ''),
    5_000,
  );
  assert.equal(await p.textContent('#panel-title'), 'Connected');
  await p.screenshot({ path: `${out}/viewer-completed.png` });

  // No reconnect: the phase stays, and no second viewer connected to the session.
  await elapse(3_000, 'the viewer does not reconnect');
  assert.equal(await p.evaluate(() => document.body.dataset.phase), 'completed');
  const { events } = await t.api.listEvents(session.id);
  assert.equal(events.filter((event) => event.type === 'viewer.connected').length, 1, 'the viewer connected once');
  await context.close();
});

test('when a delivered credential does not verify, the viewer says the sign-in could not be confirmed', async () => {
  const session = await t.readySession({ provider: 'demo' });
  const context = await browserHandle.browser.newContext({ viewport: { width: 1280, height: 800 } });
  const p = await context.newPage();
  const { viewerUrl } = await t.api.createTicket(session.id);
  await p.goto(viewerUrl);
  await p.waitForSelector('body[data-phase=connected]', { timeout: 60_000 });

  // Someone holding the sandbox token delivers a file with made-up tokens.
  const real = await demoSignIn(t.server.demoOidc!.issuer);
  const forged = JSON.stringify({ ...real, access_token: 'made-up-access-token-0123456789', account: { sub: 'ceo', email: 'ceo@victim.example' } });
  await assert.rejects(
    t.server.sessions.complete(session.id, { provider: 'demo', file: 'credentials.json', content: forged, expiresAt: null, account: null }),
    { code: 'CREDENTIAL_UNVERIFIED' },
  );

  await p.waitForSelector('body[data-phase=failed]', { timeout: 15_000 });
  assert.equal(await p.evaluate(() => document.body.dataset.closeCode), '4410');
  const sentence = (await p.textContent('#panel-sentence')) ?? '';
  assert.match(sentence, /^Your sign-in could not be confirmed with the provider, so nothing was saved/);
  // The person's sentence says what to do; the provider's answer is for the operator, under the details.
  assert.doesNotMatch(sentence, /userinfo|401|CREDENTIAL_UNVERIFIED/);
  assert.equal(await p.locator('#diagnosis').isVisible(), true);
  const detail = (await p.textContent('#operator-detail')) ?? '';
  assert.match(detail, /^CREDENTIAL_UNVERIFIED: /);
  assert.match(detail, /refused the access token at userinfo \(401\)/);
  assert.equal(sentence.includes('ceo@victim.example') || detail.includes('ceo@victim.example'), false);
  await p.screenshot({ path: `${out}/viewer-unverified.png` });
  await context.close();
});
