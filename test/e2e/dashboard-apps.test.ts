import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { launchBrowser } from '../support/browser.js';
import { startTestServer, testApiKey, testOutputDir, type TestServer } from '../support/server.js';

// The operator's side of apps, in a real Chromium: a browser whose one-time link is used logs in
// with the form and an admin key (an app key is refused with the reason), and the dashboard's
// "Apps and webhooks" shows each key and each webhook's delivery, one that failed with its cause.

let t: TestServer;
let receiver: Server;
let browserHandle: Awaited<ReturnType<typeof launchBrowser>>;

before(async () => {
  receiver = createServer((_request, response) => response.writeHead(204).end());
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const hook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
  t = await startTestServer('e2e-dashboard-apps', {
    PORTHOLE_WEBHOOK_URL: hook,
    PORTHOLE_WEBHOOK_SECRET: `whsec_${randomBytes(32).toString('base64')}`,
  });
  browserHandle = await launchBrowser();
});
after(async () => {
  await browserHandle?.close();
  await t?.stop();
  receiver?.close();
});

test('log in with an admin key on the form, then see the apps, their keys and the webhook log', async () => {
  const admin = { authorization: `Bearer ${testApiKey}`, 'content-type': 'application/json' };
  const created = await (
    await fetch(`${t.server.url}/v1/keys`, {
      method: 'POST',
      headers: admin,
      body: JSON.stringify({ name: 'acme-web', webhookUrl: 'http://127.0.0.1:1/gone' }),
    })
  ).json();
  const session = await (
    await fetch(`${t.server.url}/v1/sessions`, { method: 'POST', headers: { ...admin, authorization: `Bearer ${created.key}` }, body: '{}' })
  ).json();
  await t.waitForState(session.id, ['ready']);

  const context = await browserHandle.browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${t.server.url}/`);
  await page.waitForSelector('body[data-auth=logged-out]');
  assert.match(await page.locator('#notice-text').innerText(), /porthole login-link/);

  await page.goto(`${t.server.url}/login`);
  await page.getByLabel('Admin API key').fill(created.key);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('alert').filter({ hasText: 'app key' }).waitFor();
  await page.getByLabel('Admin API key').fill(testApiKey);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForSelector('body[data-auth=ok]');

  await page.locator('#apps summary').click();
  await page.locator('#key-rows tr', { hasText: 'acme-web' }).waitFor();
  // The env webhook is delivered; the app's own (to a closed port) is retried with its cause.
  await page.locator('#delivery-rows tr[data-state=delivered]', { hasText: 'session.ready' }).waitFor({ timeout: 30_000 });
  const failing = page.locator('#delivery-rows tr[data-state=pending]', { hasText: '/gone' });
  await failing.waitFor({ timeout: 30_000 });
  await page.waitForFunction(() => /could not be reached/.test(document.querySelector('#delivery-rows tr[data-state=pending]')?.textContent ?? ''), null, {
    timeout: 30_000,
  });
  assert.match(await failing.innerText(), /retrying in/);
  assert.match(await page.locator('#apps-summary').innerText(), /not delivered/);
  await page.screenshot({ path: join(testOutputDir('e2e-dashboard-apps'), 'apps.png'), fullPage: true });
  await context.close();
  await t.api.endSession(session.id);
});
