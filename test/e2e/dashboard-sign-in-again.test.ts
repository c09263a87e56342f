import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { launchBrowser } from '../support/browser.js';
import { deliverDemoCredential } from '../support/demo-sign-in.js';
import { startTestServer, testOutputDir, type TestServer } from '../support/server.js';
import { until } from '../support/until.js';

// The operator's side of a grant the provider stopped honouring, in a real Chromium: the dashboard
// says the credential needs a new sign-in and why, and "Sign in again" opens a new session for the
// same user and provider.

const accessTokenTtlS = 6;
let t: TestServer;
let browserHandle: Awaited<ReturnType<typeof launchBrowser>>;

before(async () => {
  t = await startTestServer('e2e-dashboard-sign-in-again', { PORTHOLE_DEMO_ACCESS_TOKEN_TTL_S: String(accessTokenTtlS) });
  browserHandle = await launchBrowser();
});
after(async () => {
  await browserHandle?.close();
  await t?.stop();
});

test('a revoked grant shows "needs sign-in" with the provider’s reason; Sign in again opens a new session for the same user', async () => {
  const issuer = t.server.demoOidc!.issuer;
  const session = await t.readySession({ provider: 'demo', userId: 'ada' });
  await deliverDemoCredential(t, session.id, issuer);
  const { file } = await t.api.getCredentials(session.id);
  const revoked = await fetch(`${issuer}/token/revocation`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token: (JSON.parse(file) as { refresh_token: string }).refresh_token, client_id: 'porthole-demo-cli' }),
  });
  assert.equal(revoked.status, 200);
  await until(
    'needs_login',
    () => t.api.getSession(session.id),
    (s) => s.credential?.state === 'needs_login',
    accessTokenTtlS * 1000 + 10_000,
  );

  const context = await browserHandle.browser.newContext({ viewport: { width: 1400, height: 800 } });
  const page = await context.newPage();
  await page.goto(t.server.loginUrl);
  await page.waitForSelector('body[data-auth=ok]');
  const row = page.locator(`tr[data-session-id="${session.id}"]`);
  await row.locator('.needs-login').waitFor();
  assert.match(await row.locator('.needs-login').innerText(), /needs sign-in[\s\S]*The provider refused the refresh at .*invalid_grant/);
  await page.screenshot({ path: join(testOutputDir('e2e-dashboard-sign-in-again'), 'needs-login.png'), fullPage: true });

  await row.getByRole('button', { name: 'Sign in again' }).click();
  await page.waitForURL(/\/sessions\/ses_/);
  const fresh = (await t.api.listSessions({ userId: 'ada' })).sessions.find((s) => s.id !== session.id);
  assert.ok(fresh, 'a new session for the same user');
  assert.equal(fresh.provider, 'demo');
  assert.match(page.url(), new RegExp(fresh.id));
  await context.close();
  await t.api.endSession(fresh.id);
});
