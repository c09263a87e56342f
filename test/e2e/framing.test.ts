import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import type { BrowserContext, Frame } from 'playwright-core';
import { launchBrowser } from '../support/browser.js';
import { startTestServer, type TestServer } from '../support/server.js';

// Clickjacking, in a real Chromium: a page on a foreign origin tries to frame porthole's pages. The
// viewer is made to be embedded, by the origins in PORTHOLE_ALLOWED_ORIGINS (it loads there and
// reaches the desktop); the dashboard by porthole alone. Two small sites on their own ports play
// the foreign site and the embedding app.

let t: TestServer;
let foreign: { server: Server; origin: string };
let embedder: { server: Server; origin: string };
let browserHandle: Awaited<ReturnType<typeof launchBrowser>>;
let context: BrowserContext;

/** A site whose page at /?src=<url> is one iframe of that URL. */
async function site(): Promise<{ server: Server; origin: string }> {
  const server = createServer((request, response) => {
    const src = new URL(request.url ?? '/', 'http://site.invalid').searchParams.get('src') ?? 'about:blank';
    const attribute = src.replaceAll('&', '&amp;').replaceAll('"', '&quot;').replaceAll('<', '&lt;');
    response
      .writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
      .end(`<!doctype html><title>site</title><iframe id="frame" src="${attribute}" width="1000" height="700"></iframe>`);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

before(async () => {
  [foreign, embedder] = await Promise.all([site(), site()]);
  t = await startTestServer('e2e-framing', { PORTHOLE_ALLOWED_ORIGINS: embedder.origin });
  browserHandle = await launchBrowser();
  context = await browserHandle.browser.newContext({ viewport: { width: 1100, height: 800 } });
  // Logged in to the dashboard in this browser, as a victim would be.
  const own = await context.newPage();
  await own.goto(t.server.loginUrl);
  assert.equal(new URL(own.url()).pathname, '/');
  await own.close();
});
after(async () => {
  await browserHandle?.close();
  await t?.stop();
  foreign?.server.close();
  embedder?.server.close();
});

/** Opens `siteOrigin`'s page framing `src`; returns the frame once it has loaded (or failed to) and what the console said. */
async function framed(siteOrigin: string, src: string): Promise<{ frame: Frame; console: string[]; close(): Promise<void> }> {
  const page = await context.newPage();
  const messages: string[] = [];
  page.on('console', (message) => messages.push(message.text()));
  await page.goto(`${siteOrigin}/?src=${encodeURIComponent(src)}`);
  const frame = await (await page.waitForSelector('#frame')).contentFrame();
  assert.ok(frame, 'the iframe has a frame');
  await frame.waitForLoadState('load');
  return { frame, console: messages, close: () => page.close() };
}

/** Chromium replaces a frame that a frame-ancestors policy refuses with its error page. */
const isBlocked = (frame: Frame) => frame.url().startsWith('chrome-error://');

test('a foreign site cannot frame the dashboard, nor the viewer', async () => {
  // The control: the same foreign page frames a porthole response that carries no policy (JSON).
  const control = await framed(foreign.origin, `${t.server.url}/healthz`);
  try {
    assert.ok(!isBlocked(control.frame), 'the site can frame porthole at all');
    assert.match(await control.frame.locator('body').innerText(), /"ok":true/);
  } finally {
    await control.close();
  }
  const dashboard = await framed(foreign.origin, `${t.server.url}/`);
  try {
    assert.ok(isBlocked(dashboard.frame), `the dashboard loaded in the frame: ${dashboard.frame.url()}`);
    assert.ok(
      dashboard.console.some((m) => /frame-ancestors 'self'/.test(m)),
      `Chromium names the policy: ${dashboard.console.join(' | ')}`,
    );
  } finally {
    await dashboard.close();
  }
  const session = await t.readySession();
  const { viewerUrl } = await t.api.createTicket(session.id);
  const viewer = await framed(foreign.origin, viewerUrl);
  try {
    assert.ok(isBlocked(viewer.frame), `the viewer loaded in a foreign site's frame: ${viewer.frame.url()}`);
  } finally {
    await viewer.close();
  }
});

test('an allowed origin frames the viewer, which reaches the desktop; it still cannot frame the dashboard', async () => {
  const session = await t.readySession();
  const { viewerUrl } = await t.api.createTicket(session.id);
  const viewer = await framed(embedder.origin, viewerUrl);
  try {
    assert.ok(!isBlocked(viewer.frame), `blocked: ${viewer.console.join(' | ')}`);
    assert.equal(new URL(viewer.frame.url()).pathname, `/v1/sessions/${session.id}/viewer`);
    await viewer.frame.waitForSelector('body[data-phase=connected]', { timeout: 60_000 });
  } finally {
    await viewer.close();
  }
  const dashboard = await framed(embedder.origin, `${t.server.url}/`);
  try {
    assert.ok(isBlocked(dashboard.frame), `the dashboard loaded in the embedding app's frame: ${dashboard.frame.url()}`);
  } finally {
    await dashboard.close();
  }
});
