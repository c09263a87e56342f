import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { mkdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import { launchBrowser } from '../support/browser.js';
import { startTestServer, testOutputDir, type TestServer } from '../support/server.js';
import { elapse, until as untilHolds } from '../support/until.js';

// The viewer's Paste action and remote resize, with a real sandbox and a real headless Chromium.
// The sandbox's Chromium opens a page this test serves on loopback: a password field over the whole
// page that reports its value (and the window's size) back here, so the test reads exactly what
// arrived on the desktop. One session serves every test in this file, in order.

/** Letters, digits, symbols, uppercase: every character that needs Shift, and a space. */
const secret = 'Tr0ub4dor&3 x!@#$%^*()_+-={}[]|:;"\'<>,.?/~`\\ ZqW9';
const green = [20, 120, 90] as const;
const yellow = [255, 220, 0] as const;

const sitePage = `<!doctype html><title>paste target</title>
<body style="margin:0;background:rgb(${green.join(',')});height:100vh;overflow:hidden">
<input id="field" type="password" autofocus autocomplete="off"
  style="position:fixed;left:0;top:0;width:100%;height:100%;box-sizing:border-box;border:0;background:transparent;font-size:40px;color:#fff">
<div style="position:fixed;right:0;top:0;width:60px;height:60px;background:rgb(${yellow.join(',')});pointer-events:none"></div>
<script>
  const field = document.getElementById('field');
  const send = (path, body) => fetch(path, { method: 'POST', body });
  // Reports overtake each other (concurrent fetches): each carries its sequence number, then a space.
  let seq = 0;
  field.addEventListener('input', () => send('/value', ++seq + ' ' + field.value));
  // Whether keys reach the field: its window has the X focus and the field the page's.
  const focus = () => send('/focus', String(document.hasFocus() && document.activeElement === field));
  for (const target of [window, field]) for (const type of ['focus', 'blur']) target.addEventListener(type, () => setTimeout(focus));
  const size = () => send('/size', JSON.stringify({ w: innerWidth, h: innerHeight, sw: screen.width, sh: screen.height, x: screenX, y: screenY, ow: outerWidth, oh: outerHeight }));
  addEventListener('resize', size);
  size();
</script></body>`;

interface WindowSize {
  w: number;
  h: number;
  sw: number;
  sh: number;
  x: number;
  y: number;
  ow: number;
  oh: number;
}

let site: Server;
const site_ = { value: null as string | null, values: [] as string[], size: null as WindowSize | null, loads: 0, focused: false, seq: 0 };
let t: TestServer;
let browserHandle: Awaited<ReturnType<typeof launchBrowser>>;
let context: BrowserContext;
let p: Page;
const out = testOutputDir('e2e-paste-resize');

/** until() that screenshots the desktop when what it waits for does not happen: that says more than the value. */
function until<T>(what: string, probe: () => Promise<T> | T, ok: (value: T) => boolean, timeoutMs = 30_000): Promise<T> {
  return untilHolds(what, probe, ok, timeoutMs, {
    onTimeout: async () => p?.screenshot({ path: `${out}/timeout-${what.replace(/[^a-z0-9]+/gi, '-').slice(0, 60)}.png` }),
  });
}

function remoteSize(page: Page): Promise<{ fb: string; canvas: string; container: string }> {
  return page.evaluate(() => {
    const rfb = (window as any).porthole.rfb;
    const canvas = document.querySelector('#screen canvas') as HTMLCanvasElement | null;
    const screen = document.querySelector('#screen') as HTMLElement;
    return {
      fb: rfb ? `${rfb._fbWidth}x${rfb._fbHeight}` : 'none',
      canvas: canvas ? `${canvas.width}x${canvas.height}` : 'none',
      container: `${screen.clientWidth}x${screen.clientHeight}`,
    };
  });
}

/**
 * Clicks the page's field on the desktop and waits until it has the keyboard: openbox moves the X
 * focus a moment after the click, and keys sent before that go to the previous window.
 */
async function focusField(page: Page): Promise<void> {
  const box = (await page.locator('#screen canvas').boundingBox())!;
  await page.mouse.click(box.x + box.width * 0.5, box.y + box.height * 0.35);
  await until(
    'the field has the keyboard',
    () => site_.focused,
    (isFocused) => isFocused,
    10_000,
  );
}

/**
 * Empties the remote field: select all and delete, typed through noVNC like any key. A key goes in
 * first and is waited for: the field may have had the keyboard already (so focusField returns at
 * once), and the click, replayed by openbox, could otherwise land after the Ctrl+A and undo it.
 */
async function clearField(page: Page): Promise<void> {
  await focusField(page);
  const before = site_.value;
  await page.keyboard.press('x');
  await until(
    'the field took the first key',
    () => site_.value,
    (v) => v !== before,
    10_000,
  );
  await page.keyboard.press('Control+a');
  await page.keyboard.press('Backspace');
  await until(
    'the field is empty',
    () => site_.value,
    (v) => v === '' || v === null,
    10_000,
  );
}

before(async () => {
  await mkdir(out, { recursive: true });
  site = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
    request.on('end', () => {
      if (request.method === 'POST' && request.url === '/value') {
        const newline = body.indexOf(' ');
        const seq = Number(body.slice(0, newline));
        if (seq > site_.seq) {
          site_.seq = seq;
          site_.value = body.slice(newline + 1);
          site_.values.push(site_.value);
        }
      } else if (request.method === 'POST' && request.url === '/focus') {
        site_.focused = body === 'true';
      } else if (request.method === 'POST' && request.url === '/size') {
        site_.size = JSON.parse(body) as WindowSize;
      } else if (request.method === 'GET' && request.url === '/') {
        site_.loads++;
        response.writeHead(200, { 'content-type': 'text/html' }).end(sitePage);
        return;
      }
      response.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
  const siteUrl = `http://127.0.0.1:${(site.address() as AddressInfo).port}/`;
  t = await startTestServer('e2e-paste-resize', { PORTHOLE_SANDBOX_START_URL: siteUrl, PORTHOLE_EGRESS_LOOPBACK: new URL(siteUrl).host });
  browserHandle = await launchBrowser();
  context = await browserHandle.browser.newContext({ viewport: { width: 1280, height: 800 } });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: t.server.url });
  p = await context.newPage();

  const session = await t.readySession();
  const { viewerUrl } = await t.api.createTicket(session.id);
  await p.goto(viewerUrl);
  await p.waitForSelector('body[data-phase=connected]', { timeout: 60_000 });
  await until(
    'the sandbox Chromium loaded the page',
    () => site_.loads,
    (n) => n > 0,
    30_000,
  );
});

after(async () => {
  await context?.close();
  await browserHandle?.close();
  await t?.stop();
  site?.close();
});

test('the desktop follows the viewer: 1280x800 page → remote framebuffer of the container', async () => {
  const size = await until(
    'the remote framebuffer matches the container',
    () => remoteSize(p),
    (s) => s.fb === s.container && s.canvas === s.container,
    15_000,
  );
  assert.match(size.fb, /^1280x\d+$/, `the desktop is as wide as the page (${JSON.stringify(size)})`);
  // The sandbox's Chromium was laid out for the new size too: as wide as the screen.
  await until(
    'the page inside reports the new screen',
    () => site_.size,
    (s) => s !== null && s.sw === 1280 && s.ow === 1280,
    15_000,
  );
  await p.screenshot({ path: `${out}/resize-1280x800.png` });
});

test('Paste types the clipboard into the focused password field: letters, digits, symbols, uppercase', async () => {
  await focusField(p);
  await p.evaluate((text) => navigator.clipboard.writeText(text), secret);
  await p.click('#paste');
  const { value } = await until(
    'the field holds the pasted text',
    async () => ({ value: site_.value, paste: await p.evaluate(() => document.body.dataset.paste), status: await p.textContent('#status') }),
    (x) => x.value === secret,
    15_000,
  );
  assert.equal(value, secret);
  await p.waitForSelector('body[data-paste=typed]');
  assert.match((await p.textContent('#status')) ?? '', new RegExp(`Typed ${[...secret].length} characters`));
  assert.ok(!site_.values.some((v) => v.length > secret.length), 'nothing beyond the text was typed');
  await p.screenshot({ path: `${out}/paste-typed.png` });
});

test('Ctrl+Shift+V pastes too, and the held modifiers do not turn the text into shortcuts', async () => {
  await clearField(p);
  await p.evaluate(() => navigator.clipboard.writeText('Shortcut-Pasted-42!'));
  await p.locator('#screen canvas').focus();
  await p.keyboard.press('Control+Shift+V');
  await until(
    'the field holds the shortcut-pasted text',
    async () => ({
      v: site_.value,
      all: site_.values.slice(-5),
      status: await p.textContent('#status'),
      paste: await p.evaluate(() => document.body.dataset.paste),
      dialog: await p.evaluate(() => (document.querySelector('#paste-dialog') as HTMLDialogElement).open),
      read: await p.evaluate(() =>
        navigator.clipboard.readText().then(
          (t) => t,
          (e) => String(e),
        ),
      ),
    }),
    (x) => x.v === 'Shortcut-Pasted-42!',
    15_000,
  );
});

test('without clipboard access, Paste opens a dialog; what is pasted there is typed', async () => {
  await clearField(p);
  // As in Firefox, Safari or a plain-HTTP page: the page may not read the clipboard.
  await p.evaluate(() => {
    navigator.clipboard.readText = () => Promise.reject(new DOMException('Read permission denied.', 'NotAllowedError'));
  });
  await p.click('#paste');
  const dialog = p.getByRole('dialog', { name: 'Paste into the desktop' });
  await dialog.waitFor();
  const input = p.getByLabel('Text to type');
  assert.equal(await input.evaluate((el) => el === document.activeElement), true, 'the text field has the focus');
  assert.equal(await input.getAttribute('type'), 'password', 'what is pasted is masked by default');
  await input.fill('Dialog+Typed 2FA: 918273');
  await p.screenshot({ path: `${out}/paste-dialog.png` });
  await p.getByRole('button', { name: 'Type it' }).click();
  await until(
    'the field holds the dialog text',
    () => site_.value,
    (v) => v === 'Dialog+Typed 2FA: 918273',
    15_000,
  );
  assert.equal(await dialog.isVisible(), false, 'the dialog closed');
  assert.equal(await input.inputValue(), '', 'the dialog forgets the text');
  await p.evaluate(() => delete (navigator.clipboard as { readText?: unknown }).readText); // the prototype's again
});

test('a text over 4 KiB is refused with a sentence, and nothing is typed', async () => {
  await clearField(p);
  const before = site_.values.length;
  await p.evaluate(() => navigator.clipboard.writeText('x'.repeat(5000)));
  await p.click('#paste');
  await until(
    'the status says why',
    () => p.textContent('#status'),
    (text) => /4\.9 KiB.*at most 4 KiB/.test(text ?? ''),
    5_000,
  );
  await p.screenshot({ path: `${out}/paste-too-long.png` });
  await elapse(500, 'nothing of the refused text reaches the field');
  assert.equal(site_.values.length, before, 'nothing reached the field');
});

test('resizing the page to 900x700 resizes the desktop and re-lays out its windows', async () => {
  await p.setViewportSize({ width: 900, height: 700 });
  const size = await until(
    'the remote framebuffer follows',
    () => remoteSize(p),
    (s) => s.fb === s.container && s.canvas === s.container,
    10_000,
  );
  assert.match(size.fb, /^900x\d+$/);
  const [, height] = size.fb.split('x').map(Number);
  // The agent's layout watcher sized Chromium to the new screen: the page inside says so.
  const inside = await until(
    'the sandbox Chromium fits the new screen',
    () => site_.size,
    (s) => s !== null && s.sw === 900 && s.ow === 900,
    10_000,
  );
  assert.ok(inside!.oh <= Math.round(height! * 0.62) + 2, `Chromium keeps to the top part: ${JSON.stringify(inside)}`);
  const yellowAtRight = () =>
    p.evaluate(
      ([rgb]) => {
        const canvas = document.querySelector('#screen canvas') as HTMLCanvasElement;
        const data = canvas.getContext('2d')!.getImageData(canvas.width - 60, 0, 60, Math.round(canvas.height * 0.4)).data;
        let n = 0;
        for (let i = 0; i < data.length; i += 4)
          if (Math.abs(data[i]! - rgb![0]!) < 12 && Math.abs(data[i + 1]! - rgb![1]!) < 12 && Math.abs(data[i + 2]! - rgb![2]!) < 12) n++;
        return n;
      },
      [yellow] as const,
    );
  // The page's top-right marker is drawn at the canvas's right edge once the new frame arrived.
  await until("the page's right edge is on screen (marker pixels)", yellowAtRight, (n) => n > 2_000, 10_000);
  await p.screenshot({ path: `${out}/resize-900x700.png` });

  // Paste still lands after the re-layout.
  await clearField(p);
  await p.evaluate(() => navigator.clipboard.writeText('after-Resize#7'));
  await p.click('#paste');
  await until(
    'the field holds text pasted after the resize',
    () => site_.value,
    (v) => v === 'after-Resize#7',
    15_000,
  );
});

test('below 640x480 the desktop stays 640x480 and is scaled to fit', async () => {
  await p.setViewportSize({ width: 420, height: 520 });
  const size = await until(
    'the remote framebuffer stops at the floor',
    () => remoteSize(p),
    (s) => s.fb === '640x480',
    10_000,
  );
  const box = (await p.locator('#screen canvas').boundingBox())!;
  assert.ok(box.width <= 421 && box.height <= 480, `the canvas is scaled into the page (${JSON.stringify({ size, box })})`);
  await until(
    'the sandbox Chromium fits 640 px',
    () => site_.size,
    (s) => s !== null && s.sw === 640 && s.ow === 640,
    10_000,
  );
  await p.screenshot({ path: `${out}/resize-min-420x520.png` });
});
