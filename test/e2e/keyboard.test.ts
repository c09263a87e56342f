import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { mkdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import { launchBrowser } from '../support/browser.js';
import { startTestServer, testOutputDir, type TestServer } from '../support/server.js';
import { elapse, until as untilHolds } from '../support/until.js';

// The person's keyboard through the viewer's canvas, with a real sandbox and a real headless
// Chromium: text with capitals, digits and symbols arrives exactly, as Playwright types it (no
// Shift event for "@") and as a person types it (Shift held around each shifted key); shortcuts
// arrive as themselves. The sandbox's Chromium opens a page this test serves on loopback: an e-mail
// field in a sign-in form (as the demo provider's) that reports its value and every key event back,
// so the test reads exactly what arrived on the desktop. One session serves every test, in order.
//
// The bug this holds: Ctrl+A whose letter came as "A" reached the desktop as Ctrl+Shift+A (Xvnc
// fakes Shift for an uppercase keysym), Chromium's Tab Search bubble opened and took the keys typed
// after it: "demo" in the field, "@porthole.test" in the bubble (src/viewer/lib/shortcut-keys.ts).

const text = 'Demo.User+tag@Porthole.test!#$%^&*()_ Zz9';

const sitePage = `<!doctype html><title>keyboard target</title>
<body style="margin:0;background:rgb(20,120,90);height:100vh;overflow:hidden">
<form method="post" action="/login" autocomplete="on" onsubmit="event.preventDefault(); send('/submit', field.value)">
<input id="field" name="email" type="text" autocomplete="username" spellcheck="false" autocapitalize="off" autofocus
  style="position:fixed;left:0;top:0;width:100%;height:60%;box-sizing:border-box;border:0;background:transparent;font-size:32px;color:#fff">
<input id="other" name="password" type="password" autocomplete="current-password" style="position:fixed;left:0;top:75%;width:50%;font-size:20px">
<button type="submit" tabindex="-1" style="position:fixed;left:60%;top:75%">Sign in</button>
</form>
<script>
  const field = document.getElementById('field');
  const send = (path, body) => fetch(path, { method: 'POST', body });
  // Reports overtake each other (concurrent fetches): each carries its sequence number, then a space.
  let seq = 0;
  field.addEventListener('input', () => send('/value', ++seq + ' ' + field.value));
  addEventListener('keydown', (e) => send('/key', JSON.stringify({ key: e.key, code: e.code, ctrl: e.ctrlKey, shift: e.shiftKey, capsLock: e.getModifierState('CapsLock'), target: document.activeElement?.id ?? '' })), true);
  const focus = () => send('/focus', document.hasFocus() ? (document.activeElement?.id || 'none') : 'none');
  for (const target of [window, ...document.querySelectorAll('input')]) for (const type of ['focus', 'blur']) target.addEventListener(type, () => setTimeout(focus));
</script></body>`;

interface KeyReport {
  key: string;
  code: string;
  ctrl: boolean;
  shift: boolean;
  capsLock: boolean;
  target: string;
}

let site: Server;
const site_ = { value: null as string | null, seq: 0, keys: [] as KeyReport[], loads: 0, focused: 'none', submitted: null as string | null };
let t: TestServer;
let browserHandle: Awaited<ReturnType<typeof launchBrowser>>;
let context: BrowserContext;
let p: Page;
const out = testOutputDir('e2e-keyboard');

/** until() that screenshots the desktop when what it waits for does not happen: that says more than the value. */
function until<T>(what: string, probe: () => Promise<T> | T, ok: (value: T) => boolean, timeoutMs = 30_000): Promise<T> {
  return untilHolds(what, probe, ok, timeoutMs, {
    onTimeout: async () => p?.screenshot({ path: `${out}/timeout-${what.replace(/[^a-z0-9]+/gi, '-').slice(0, 60)}.png` }),
  });
}

/** Waits for the field to hold `expected`, then a moment longer: a late key would still change it. */
async function fieldHolds(what: string, expected: string): Promise<void> {
  await until(
    what,
    () => site_.value,
    (v) => v === expected,
    15_000,
  );
  await elapse(300, 'no late key changes the field');
  assert.equal(site_.value, expected, `${what}: nothing arrives after the text`);
}

/**
 * Clicks the page's field on the desktop and waits until it has the keyboard: openbox moves the X
 * focus a moment after the click, and keys sent before that go to the previous window.
 */
async function focusField(): Promise<void> {
  const box = (await p.locator('#screen canvas').boundingBox())!;
  await p.mouse.click(box.x + box.width * 0.5, box.y + box.height * 0.3);
  await until(
    'the field has the keyboard',
    () => site_.focused,
    (id) => id === 'field',
    10_000,
  );
}

/**
 * Empties the field with keys: select all, delete. A key goes in first and is waited for, so that
 * "empty" afterwards proves the select-all and the delete arrived: a field that was empty already
 * would pass at once, and a late Ctrl+A and Backspace would then eat the start of what comes next.
 */
async function clearField(): Promise<void> {
  await focusField();
  const before = site_.value;
  await p.keyboard.press('x');
  await until(
    'the field took the first key',
    () => site_.value,
    (v) => v !== before,
    10_000,
  );
  await p.keyboard.press('Control+a');
  await p.keyboard.press('Backspace');
  await until(
    'the field is empty',
    () => site_.value,
    (v) => v === '' || v === null,
    10_000,
  );
}

/** The key a person presses for each character on a US keyboard, and whether with Shift. */
const usKeys: Record<string, [code: string, isShifted: boolean]> = {
  ' ': ['Space', false],
  '.': ['Period', false],
  '+': ['Equal', true],
  '@': ['Digit2', true],
  '!': ['Digit1', true],
  '#': ['Digit3', true],
  $: ['Digit4', true],
  '%': ['Digit5', true],
  '^': ['Digit6', true],
  '&': ['Digit7', true],
  '*': ['Digit8', true],
  '(': ['Digit9', true],
  ')': ['Digit0', true],
  _: ['Minus', true],
};

function usKeyFor(char: string): [code: string, isShifted: boolean] {
  if (/^[a-z]$/.test(char)) return [`Key${char.toUpperCase()}`, false];
  if (/^[A-Z]$/.test(char)) return [`Key${char}`, true];
  if (/^[0-9]$/.test(char)) return [`Digit${char}`, false];
  const key = usKeys[char];
  if (!key) throw new Error(`no US key for ${JSON.stringify(char)}`);
  return key;
}

/** As a person types: Shift pressed and released around each character that needs it. */
async function typeAsPerson(value: string): Promise<void> {
  for (const char of value) {
    const [code, isShifted] = usKeyFor(char);
    if (isShifted) await p.keyboard.down('Shift');
    await p.keyboard.press(code);
    if (isShifted) await p.keyboard.up('Shift');
  }
}

before(async () => {
  await mkdir(out, { recursive: true });
  site = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
    request.on('end', () => {
      if (request.method === 'POST' && request.url === '/value') {
        const space = body.indexOf(' ');
        const seq = Number(body.slice(0, space));
        if (seq > site_.seq) {
          site_.seq = seq;
          site_.value = body.slice(space + 1);
        }
      } else if (request.method === 'POST' && request.url === '/key') {
        site_.keys.push(JSON.parse(body) as KeyReport);
      } else if (request.method === 'POST' && request.url === '/focus') {
        site_.focused = body;
      } else if (request.method === 'POST' && request.url === '/submit') {
        site_.submitted = body;
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
  t = await startTestServer('e2e-keyboard', { PORTHOLE_SANDBOX_START_URL: siteUrl, PORTHOLE_EGRESS_LOOPBACK: new URL(siteUrl).host });
  browserHandle = await launchBrowser();
  context = await browserHandle.browser.newContext({ viewport: { width: 1280, height: 800 } });
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
  // The desktop follows the viewer's size; click only once it has.
  await until(
    'the remote framebuffer matches the container',
    () =>
      p.evaluate(() => {
        const rfb = (window as any).porthole.rfb;
        const screen = document.querySelector('#screen') as HTMLElement;
        return rfb ? `${rfb._fbWidth}x${rfb._fbHeight}` === `${screen.clientWidth}x${screen.clientHeight}` : false;
      }),
    (isSame) => isSame,
    15_000,
  );
});

after(async () => {
  await context?.close();
  await browserHandle?.close();
  await t?.stop();
  site?.close();
});

test('keyboard.type: letters, capitals, digits and symbols arrive exactly, twice in a row', async () => {
  await clearField();
  await p.keyboard.type(text);
  await fieldHolds('the field holds the text typed once', text);
  await p.keyboard.type(text);
  await fieldHolds('the field holds the text typed twice', text + text);
  await p.screenshot({ path: `${out}/typed-twice.png` });
});

test('as a person types, Shift held around each shifted key: arrives exactly, twice in a row', async () => {
  await clearField();
  await typeAsPerson(text);
  await fieldHolds('the field holds the text typed once', text);
  await typeAsPerson(text);
  await fieldHolds('the field holds the text typed twice', text + text);
});

test('Ctrl+A then typing replaces the text, however the A comes (Control+a, Control+A)', async () => {
  for (const selectAll of ['Control+a', 'Control+A']) {
    await clearField();
    await p.keyboard.type(text);
    await fieldHolds(`the field holds the text (${selectAll})`, text);
    site_.keys.length = 0;
    await p.keyboard.press(selectAll);
    await p.keyboard.type('demo@porthole.test');
    await fieldHolds(`${selectAll} then typing replaced the text`, 'demo@porthole.test');
    // The desktop saw Ctrl+A, not Ctrl+Shift+A (Chromium's Tab Search, which takes the keyboard).
    const selectAllKey = site_.keys.find((k) => k.code === 'KeyA' && k.ctrl);
    assert.ok(selectAllKey, `the desktop saw Ctrl+A (${JSON.stringify(site_.keys.slice(0, 4))})`);
    assert.equal(selectAllKey.shift, false, `${selectAll} arrived without Shift`);
    // A moment later the field still has the keyboard: no bubble took it.
    await elapse(1_500, 'no bubble (Tab Search) opens and takes the keyboard');
    assert.equal(site_.focused, 'field', 'the field still has the keyboard');
    await p.keyboard.type('!');
    await fieldHolds(`a key typed later still lands in the field (${selectAll})`, 'demo@porthole.test!');
  }
  assert.ok(!site_.keys.some((k) => k.capsLock), 'Caps Lock was never on');
});

test('editing keys: Backspace, arrows, Ctrl+C/Ctrl+V inside the desktop, Tab and Enter', async () => {
  await clearField();
  await p.keyboard.type('abcd');
  await fieldHolds('typed', 'abcd');
  await p.keyboard.press('Backspace');
  await fieldHolds('Backspace deleted one', 'abc');
  await p.keyboard.press('ArrowLeft');
  await p.keyboard.press('ArrowLeft');
  await p.keyboard.type('X');
  await fieldHolds('arrows moved the caret', 'aXbc');
  await p.keyboard.press('Control+a');
  await p.keyboard.press('Control+c');
  await p.keyboard.press('End');
  await p.keyboard.press('Control+v');
  await fieldHolds("Ctrl+C, End, Ctrl+V used the desktop's clipboard", 'aXbcaXbc');
  // A held modifier: Shift+Home selects to the start, typing replaces the selection.
  await p.keyboard.down('Shift');
  await p.keyboard.press('Home');
  await p.keyboard.up('Shift');
  await p.keyboard.type('Held');
  await fieldHolds('Shift+Home then typing replaced the selection', 'Held');
  await p.keyboard.press('Tab');
  await until(
    'Tab moved the focus to the next field',
    () => site_.focused,
    (id) => id === 'other',
    10_000,
  );
  await p.keyboard.down('Shift');
  await p.keyboard.press('Tab');
  await p.keyboard.up('Shift');
  await until(
    'Shift+Tab moved it back',
    () => site_.focused,
    (id) => id === 'field',
    10_000,
  );
  await p.keyboard.press('Enter');
  await until(
    'Enter submitted the form',
    () => site_.submitted,
    (v) => v === 'Held',
    10_000,
  );
});

/** A key as another layout's keyboard reports it (Playwright's own keyboard knows only US). */
async function _layoutKey(key: string, code: string, text = ''): Promise<void> {
  const cdp = await context.newCDPSession(p);
  await cdp.send('Input.dispatchKeyEvent', { type: text ? 'keyDown' : 'rawKeyDown', key, code, text });
  await cdp.send('Input.dispatchKeyEvent', { type: 'keyUp', key, code });
  await cdp.detach();
}

test('non-US layouts: German "@" (AltGr+Q) arrives', async () => {
  await clearField();
  // German "@" is AltGr+Q: AltGr held, then a key the browser reports as "@" on KeyQ.
  const cdp = await context.newCDPSession(p);
  await cdp.send('Input.dispatchKeyEvent', { type: 'rawKeyDown', key: 'AltGraph', code: 'AltRight' });
  await cdp.send('Input.dispatchKeyEvent', { type: 'keyDown', key: '@', code: 'KeyQ', text: '@' });
  await cdp.send('Input.dispatchKeyEvent', { type: 'keyUp', key: '@', code: 'KeyQ' });
  await cdp.send('Input.dispatchKeyEvent', { type: 'keyUp', key: 'AltGraph', code: 'AltRight' });
  await cdp.detach();
  await p.keyboard.type('x');
  await fieldHolds('the German "@" arrived', '@x');
});
