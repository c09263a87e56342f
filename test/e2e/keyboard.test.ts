import { after, before, test } from 'node:test';
import { mkdir } from 'node:fs/promises';
import { execSync } from 'node:child_process';
import type { Page } from 'playwright-core';
import { launchBrowser } from '../support/browser.js';
import { startTestServer, testOutputDir, type TestServer } from '../support/server.js';

let t: TestServer;
let browserHandle: Awaited<ReturnType<typeof launchBrowser>>;
const out = testOutputDir('e2e-keyboard-demo');
const email = 'demo@porthole.test';
before(async () => {
  await mkdir(out, { recursive: true });
  t = await startTestServer('e2e-keyboard-demo', { PORTHOLE_DEMO_EMAIL: email, PORTHOLE_DEMO_PASSWORD: 'Demo-Pa55word!#' });
  browserHandle = await launchBrowser();
});
after(async () => {
  execSync(`cp -r ${t.dataDir}/sandboxes/*/run/logs ${out}/ || true`);
  await browserHandle?.close();
  await t?.stop();
});
type Box = { x: number; y: number; w: number; h: number };
const blue = [47, 111, 222] as const; // the demo pages' primary button

/**
 * The demo pages' primary button ("Sign in", "Allow"), in desktop pixels: the tallest band of rows
 * with a long run of its blue (a focused field's ring and the logo are the same blue, but thin).
 */
function buttonBox(p: Page): Promise<Box | null> {
  return p.evaluate((rgb) => {
    const canvas = document.querySelector('#screen canvas') as HTMLCanvasElement | null;
    if (!canvas || canvas.width === 0) return null;
    const { width, height } = canvas;
    const data = canvas.getContext('2d')!.getImageData(0, 0, width, height).data;
    const isBlue = (i: number) => Math.abs(data[i]! - rgb[0]!) < 10 && Math.abs(data[i + 1]! - rgb[1]!) < 10 && Math.abs(data[i + 2]! - rgb[2]!) < 10;
    let best: { x: number; y: number; w: number; h: number } | null = null;
    let band: { y: number; x0: number; x1: number } | null = null;
    for (let y = 0; y <= height; y++) {
      let n = 0;
      let x0 = width;
      let x1 = -1;
      if (y < height) {
        for (let x = 0; x < width; x++) {
          if (isBlue((y * width + x) * 4)) {
            n++;
            x0 = Math.min(x0, x);
            x1 = Math.max(x1, x);
          }
        }
      }
      if (n >= 150) {
        band = band ? { y: band.y, x0: Math.min(band.x0, x0), x1: Math.max(band.x1, x1) } : { y, x0, x1 };
      } else if (band) {
        const h = y - band.y;
        if (h >= 20 && (!best || h > best.h)) best = { x: band.x0, y: band.y, w: band.x1 - band.x0 + 1, h };
        band = null;
      }
    }
    return best;
  }, blue);
}

/**
 * The two text fields above the "Sign in" button, found the way a person's eye does: walking up
 * the column through the button's centre, each field is a pair of border runs (non-white rows)
 * around a white interior at least 25 px tall. Returns their centres, password field first.
 */
function fieldsAbove(p: Page, button: Box): Promise<Array<{ x: number; y: number }>> {
  return p.evaluate((button) => {
    const canvas = document.querySelector('#screen canvas') as HTMLCanvasElement;
    const x = Math.round(button.x + button.w / 2);
    const column = canvas.getContext('2d')!.getImageData(x, 0, 1, button.y).data;
    const isWhite = (y: number) => column[y * 4]! > 245 && column[y * 4 + 1]! > 245 && column[y * 4 + 2]! > 245;
    const fields: Array<{ x: number; y: number }> = [];
    let y = button.y - 1;
    while (y > 0 && fields.length < 2) {
      while (y > 0 && isWhite(y)) y--; // gap above the button or the previous field
      while (y > 0 && !isWhite(y)) y--; // a field's bottom border (and focus ring)
      const bottom = y;
      while (y > 0 && isWhite(y)) y--; // its interior
      if (bottom - y >= 25) {
        fields.push({ x, y: Math.round((bottom + y) / 2) });
        while (y > 0 && !isWhite(y)) y--; // its top border, so the label gap above is not taken for a field
      }
    }
    return fields;
  }, button);
}

async function until<T>(what: string, probe: () => Promise<T>, ok: (value: T) => boolean, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = await probe();
  while (!ok(last)) {
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(last)} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 250));
    last = await probe();
  }
  return last;
}


test('demo page typing', async () => {
  const context = await browserHandle.browser.newContext({ viewport: { width: 1400, height: 960 } });
  const p = await context.newPage();
  const created = await t.api.createSession({ provider: 'demo' });
  await t.waitForState(created.id, ['ready']);
  const { viewerUrl } = await t.api.createTicket(created.id);
  await p.goto(viewerUrl);
  await p.waitForSelector('body[data-phase=connected]', { timeout: 60_000 });
  const signIn = await until('the login page in the canvas', () => buttonBox(p), (box) => box !== null, 60_000);
  const canvas = (await p.locator('#screen canvas').boundingBox())!;
  const size = await p.locator('#screen canvas').evaluate((c: HTMLCanvasElement) => ({ w: c.width, h: c.height }));
  const toPage = (point: { x: number; y: number }) => ({ x: canvas.x + (point.x * canvas.width) / size.w, y: canvas.y + (point.y * canvas.height) / size.h });
  const [passwordField, emailField] = await fieldsAbove(p, signIn!);
  for (let i = 0; i < 4; i++) {
    const at = toPage(emailField!);
    await p.mouse.click(at.x, at.y);
    await p.keyboard.press('Control+A');
    if (i % 2 === 0) await p.keyboard.type(email);
    else for (const ch of email) { if (ch === '@') { await p.keyboard.down('Shift'); await p.keyboard.press('Digit2'); await p.keyboard.up('Shift'); } else await p.keyboard.press(ch); }
    await p.waitForTimeout(1500);
    await p.screenshot({ path: `${out}/typed-${i}.png` });
  }
  const at = toPage(passwordField!);
  await p.mouse.click(at.x, at.y);
  await p.keyboard.type('Demo-Pa55word!#');
  await p.waitForTimeout(1500);
  await p.screenshot({ path: `${out}/typed-password.png` });
  await context.close();
});
