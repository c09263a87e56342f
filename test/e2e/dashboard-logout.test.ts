import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launchBrowser } from '../support/browser.js';
import { startTestServer, type TestServer } from '../support/server.js';

// The dashboard's Log out, in a real Chromium: the login link signs the browser in, the button
// signs it out (POST /logout from porthole's own page passes the Origin check), the cookie is
// gone, the page says so, and a copy of the old cookie no longer opens anything.

let t: TestServer;
let browserHandle: Awaited<ReturnType<typeof launchBrowser>>;

before(async () => {
  t = await startTestServer('e2e-dashboard-logout');
  browserHandle = await launchBrowser();
});
after(async () => {
  await browserHandle?.close();
  await t?.stop();
});

test('Log out ends the dashboard login for good', async () => {
  const context = await browserHandle.browser.newContext();
  const page = await context.newPage();
  await page.goto(t.server.loginUrl);
  await page.waitForSelector('body[data-auth=ok]');
  const [cookie] = await context.cookies();
  assert.equal(cookie?.name, 'porthole_login');
  assert.ok(cookie.httpOnly && cookie.sameSite === 'Strict');
  assert.ok(cookie.expires * 1000 - Date.now() <= 12 * 3600_000 + 60_000, `expires ${new Date(cookie.expires * 1000).toISOString()}: 12 h at most`);

  await page.getByRole('button', { name: 'Log out' }).click();
  await page.waitForSelector('body[data-auth=logged-out]');
  assert.equal(await page.locator('#summary').innerText(), 'Not logged in.');
  assert.equal(await page.getByRole('button', { name: 'Log out' }).isVisible(), false, 'nothing to log out of');
  assert.deepEqual(await context.cookies(), [], 'the cookie is cleared');

  const stolen = await fetch(`${t.server.url}/v1/sessions`, { headers: { cookie: `${cookie.name}=${cookie.value}` } });
  assert.equal(stolen.status, 401, 'the old cookie value is refused');
  await context.close();
});
