import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { mkdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import type { Page } from 'playwright-core';
import { launchBrowser } from '../support/browser.js';
import { startTestServer, testOutputDir, type TestServer } from '../support/server.js';
import { until } from '../support/until.js';

// The whole stack in a real browser: dashboard → new session → live desktop in the noVNC canvas →
// the sandbox's Chromium shows a page this test serves → typing reaches the remote xterm → ending
// the session closes the viewer with the ended code and sentence.

const green = [20, 120, 90] as const;
const yellow = [255, 220, 0] as const;
const page = `<!doctype html><title>porthole e2e</title>
<body style="margin:0;background:rgb(${green.join(',')});height:100vh">
<h1 style="color:rgb(${yellow.join(',')});font:bold 110px sans-serif;margin:40px">PORTHOLE E2E</h1></body>`;

let site: Server;
const visits: string[] = [];
let t: TestServer;
let browserHandle: Awaited<ReturnType<typeof launchBrowser>>;
const out = testOutputDir('e2e');

before(async () => {
  await mkdir(out, { recursive: true });
  site = createServer((request, response) => {
    visits.push(String(request.headers['user-agent']));
    response.writeHead(200, { 'content-type': 'text/html' }).end(page);
  });
  await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
  const siteUrl = `http://127.0.0.1:${(site.address() as AddressInfo).port}/`;
  t = await startTestServer('e2e', { PORTHOLE_SANDBOX_START_URL: siteUrl, PORTHOLE_EGRESS_LOOPBACK: new URL(siteUrl).host });
  browserHandle = await launchBrowser();
});
after(async () => {
  await browserHandle?.close();
  await t?.stop();
  site?.close();
});

/** Counts canvas pixels near a colour, in a region given in remote-desktop coordinates (the canvas is 1:1 with the desktop). */
function countColour(p: Page, rgb: readonly number[], region?: { x: number; y: number; w: number; h: number }): Promise<number> {
  return p.evaluate(
    ([rgb, region]) => {
      const canvas = document.querySelector('#screen canvas') as HTMLCanvasElement | null;
      if (!canvas || canvas.width === 0) return 0;
      const r = region ?? { x: 0, y: 0, w: canvas.width, h: canvas.height };
      const data = canvas.getContext('2d')!.getImageData(r.x, r.y, r.w, r.h).data;
      let n = 0;
      for (let i = 0; i < data.length; i += 4) {
        if (Math.abs(data[i]! - rgb[0]!) < 12 && Math.abs(data[i + 1]! - rgb[1]!) < 12 && Math.abs(data[i + 2]! - rgb[2]!) < 12) n++;
      }
      return n;
    },
    [rgb, region] as const,
  );
}

function regionHash(p: Page, region: { x: number; y: number; w: number; h: number }): Promise<number> {
  return p.evaluate((r) => {
    const canvas = document.querySelector('#screen canvas') as HTMLCanvasElement;
    const data = canvas.getContext('2d')!.getImageData(r.x, r.y, r.w, r.h).data;
    let h = 0;
    for (let i = 0; i < data.length; i++) h = (h * 31 + data[i]!) | 0;
    return h;
  }, region);
}

test('dashboard → live desktop → type → end, in a real browser', async () => {
  const context = await browserHandle.browser.newContext({ viewport: { width: 1400, height: 960 } });
  const p = await context.newPage();
  const consoleErrors: string[] = [];
  p.on('console', (message) => message.type() === 'error' && consoleErrors.push(message.text()));

  await p.goto(t.server.loginUrl);
  assert.equal(new URL(p.url()).pathname, '/', 'the login link lands on the dashboard');
  await p.screenshot({ path: `${out}/dashboard.png` });

  await p.selectOption('#new-provider', ''); // a bare desktop: this test's page, no provider login
  await p.click('#new-session');
  await p.waitForURL(/\/v1\/sessions\/ses_[0-9a-z]+\/viewer/, { timeout: 15_000 });
  await p.waitForSelector('body[data-phase=connected]', { timeout: 60_000 });
  assert.ok(!p.url().includes('ticket='), 'the ticket is taken out of the address bar');

  // The sandbox's Chromium renders the page this test served on loopback.
  const greenPixels = await until(
    'green page in the canvas',
    () => countColour(p, green),
    (n) => n > 100_000,
  );
  const yellowPixels = await countColour(p, yellow);
  assert.ok(yellowPixels > 2_000, `the page's text is drawn (${yellowPixels} yellow pixels, ${greenPixels} green)`);
  assert.ok(
    visits.some((ua) => /Chrome\//.test(ua)),
    `the sandbox's Chromium fetched the page: ${visits.join(' | ')}`,
  );
  await p.screenshot({ path: `${out}/viewer-connected.png` });

  // Type into the remote xterm (the lower part of the desktop) and see the framebuffer change there.
  const canvas = p.locator('#screen canvas');
  const box = (await canvas.boundingBox())!;
  const size = await canvas.evaluate((c: HTMLCanvasElement) => ({ w: c.width, h: c.height }));
  // The terminal fills the desktop below its top 62 % (src/agent/layout.ts), whatever size the viewer gave it.
  const terminalRegion = { x: 0, y: Math.round(size.h * 0.64), w: size.w, h: Math.round(size.h * 0.34) };
  const before = await regionHash(p, terminalRegion);
  await p.mouse.click(box.x + box.width * 0.3, box.y + box.height * 0.85);
  await p.keyboard.type('echo typed-through-porthole', { delay: 20 });
  await p.keyboard.press('Enter');
  await until(
    'the terminal region changes after typing',
    () => regionHash(p, terminalRegion),
    (h) => h !== before,
    15_000,
  );
  await p.screenshot({ path: `${out}/viewer-typed.png` });

  const sessionId = await p.evaluate(() => (window as any).porthole.sessionId as string);
  assert.equal((await t.api.getSession(sessionId)).state, 'authenticating', 'a connected viewer moves the session to authenticating');

  // End from the viewer: the socket closes with the ended code and the page says so.
  await p.getByRole('button', { name: /end session/i }).click();
  await p.waitForSelector('body[data-phase=closed]', { timeout: 15_000 });
  assert.equal(await p.evaluate(() => document.body.dataset.closeCode), '4410');
  assert.equal(await p.evaluate(() => document.body.dataset.closeReason), 'SESSION_ENDED');
  const sentence = (await p.textContent('#status')) ?? '';
  assert.match(sentence, /ended/i);
  assert.doesNotMatch(sentence, /^disconnected$/i);
  await p.screenshot({ path: `${out}/viewer-ended.png` });

  const session = await t.api.getSession(sessionId);
  assert.equal(session.state, 'ended');
  await until(
    'its sandbox is gone',
    () => t.server.driver.list(),
    (list) => list.length === 0,
    10_000,
  );
  assert.deepEqual(
    consoleErrors.filter((e) => !/favicon/.test(e)),
    [],
    'no console errors on the pages',
  );
  await context.close();
});
