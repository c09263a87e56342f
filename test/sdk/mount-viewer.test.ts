import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import type { Browser } from 'playwright-core';
import { Porthole } from '@porthole/sdk';
import { launchBrowser } from '../support/browser.js';
import { startTestServer, testApiKey, type TestServer } from '../support/server.js';
import { until } from '../support/until.js';

// mountViewer in a real Chromium, on an app page of another origin (allowed by
// PORTHOLE_ALLOWED_ORIGINS): the iframe loads the viewer, the viewer's hello is answered with the
// app's configure, and its state and end reach the handle. The page loads the SDK's browser entry
// bundled here by esbuild, as an app's bundler would.

const root = fileURLToPath(new URL('../../../', import.meta.url));

const appPage = `<!doctype html>
<meta charset="utf-8">
<title>An app</title>
<div id="connect" style="width: 900px; height: 640px"></div>
<script type="module">
  import { mountViewer } from '/sdk.js';
  const viewerUrl = new URLSearchParams(location.search).get('viewer');
  window.received = [];
  window.unsubscribedCalls = 0;
  const handle = mountViewer(document.getElementById('connect'), {
    viewerUrl,
    lang: 'de',
    theme: { '--accent': 'rgb(1, 2, 3)' },
    hide: ['end'],
  });
  for (const type of ['state', 'completed', 'failed', 'ended']) handle.on(type, (message) => window.received.push(message));
  const off = handle.on('state', () => window.unsubscribedCalls++);
  off();
  window.handle = handle;
</script>`;

let t: TestServer;
let app: Server;
let appOrigin: string;
let browser: { browser: Browser; close(): Promise<void> };

before(async () => {
  const bundle = await build({
    entryPoints: [`${root}sdk/src/browser.ts`],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    logLevel: 'warning',
  });
  const sdkJs = bundle.outputFiles[0]!.text;
  app = createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://app').pathname;
    if (path === '/sdk.js') return void response.writeHead(200, { 'content-type': 'text/javascript' }).end(sdkJs);
    if (path === '/') return void response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(appPage);
    response.writeHead(404).end();
  });
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  appOrigin = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
  t = await startTestServer('sdk-mount-viewer', { PORTHOLE_ALLOWED_ORIGINS: appOrigin });
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await t?.stop();
  await new Promise<void>((resolve) => (app ? app.close(() => resolve()) : resolve()));
});

interface Message {
  source: string;
  v: number;
  type: string;
  sessionId: string;
  [field: string]: unknown;
}

test('mountViewer frames the viewer, configures it, and surfaces its state and end', async () => {
  const porthole = new Porthole({ baseUrl: t.server.url, apiKey: testApiKey });
  const session = await porthole.createSession({ userId: 'mount-viewer' });
  const page = await browser.browser.newPage();
  try {
    const { viewerUrl } = await porthole.createViewerTicket(session.id);
    await page.goto(`${appOrigin}/?viewer=${encodeURIComponent(viewerUrl)}`);

    const iframe = page.locator('#connect iframe');
    assert.equal(await iframe.getAttribute('allow'), 'clipboard-read; clipboard-write; fullscreen');
    const src = new URL((await iframe.getAttribute('src'))!);
    assert.equal(src.origin, new URL(t.server.url).origin);
    assert.equal(src.searchParams.get('embedder'), appOrigin);
    assert.equal(src.searchParams.get('lang'), 'de');
    assert.equal(src.searchParams.get('hide'), 'end');
    assert.ok(src.searchParams.get('ticket'), 'the ticket rides along');
    const box = await iframe.boundingBox();
    assert.deepEqual([box?.width, box?.height], [900, 640], 'the frame fills its element');

    const received = () => page.evaluate(() => (window as any).received as Message[]);
    const states = await until('a state message from the viewer', received, (messages) => messages.some((m) => m.type === 'state'), 60_000);
    const first = states.find((m) => m.type === 'state')!;
    assert.equal(first.source, 'porthole-viewer');
    assert.equal(first.v, 1);
    assert.equal(first.sessionId, session.id);
    assert.equal(typeof first.sentence, 'string');
    assert.ok(typeof first.phase === 'string' && typeof first.state === 'string');

    // The viewer took the app's configure (its answer to the viewer's hello).
    const frame = await until(
      'the viewer frame',
      () => page.frames().find((f) => f.url().startsWith(t.server.url)),
      (f) => f !== undefined,
    );
    const configured = await until(
      'the viewer configured',
      () =>
        frame!.evaluate(() => ({
          configured: document.documentElement.dataset.configured ?? null,
          lang: document.documentElement.lang,
          accent: document.documentElement.style.getPropertyValue('--accent'),
        })),
      (v) => v.configured === 'true',
      30_000,
    );
    assert.deepEqual(configured, { configured: 'true', lang: 'de', accent: 'rgb(1, 2, 3)' });

    // A message that claims to be the viewer's but comes from elsewhere (here the page itself) is ignored.
    const forgedCompleted = await page.evaluate(
      () =>
        new Promise<number>((resolve) => {
          window.addEventListener('message', (event) => {
            if (event.data === 'after-forgery') resolve(((window as any).received as Message[]).filter((m) => m.type === 'completed').length);
          });
          window.postMessage({ source: 'porthole-viewer', v: 1, type: 'completed', sessionId: 'ses_forged', account: 'mallory' }, '*');
          window.postMessage('after-forgery', '*');
        }),
    );
    assert.equal(forgedCompleted, 0);

    await porthole.endSession(session.id);
    const ended = await until('the ended message', received, (messages) => messages.some((m) => m.type === 'ended'), 30_000);
    assert.equal(ended.find((m) => m.type === 'ended')!.reason, 'user');
    const handleState = await page.evaluate(() => (window as any).handle.state as Message | null);
    const lastState = ended.filter((m) => m.type === 'state').at(-1);
    assert.deepEqual(handleState, lastState, 'handle.state is the last state message');
    assert.equal(await page.evaluate(() => (window as any).unsubscribedCalls), 0, 'an unsubscribed listener is not called');

    await page.evaluate(() => (window as any).handle.destroy());
    assert.equal(await page.locator('iframe').count(), 0, 'destroy() removes the iframe');
  } finally {
    await page.close();
    await porthole.endSession(session.id).catch(() => {});
  }
});
