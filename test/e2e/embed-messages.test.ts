import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type IncomingMessage, request as httpRequest, type Server } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import type { Duplex } from 'node:stream';
import { after, before, test } from 'node:test';
import type { BrowserContext, Frame, Page } from 'playwright-core';
import type { ViewerMessage } from '../../src/protocol/embed-messages.js';
import { launchBrowser } from '../support/browser.js';
import { signInThroughFramedCanvas } from '../support/canvas-sign-in.js';
import { demoSignIn } from '../support/demo-sign-in.js';
import { startTestServer, testOutputDir, type TestServer } from '../support/server.js';
import { elapse, until, untilDefined } from '../support/until.js';

// The iframe recipe as an app developer lives it (docs/embedding.md), in a real Chromium: an app page
// on an allowed origin frames the viewer with `embedder=<its origin>`, hears `hello`, `state` and —
// once the demo sign-in is done through the canvas in that frame — `completed` with the account;
// its configure message themes the viewer, hides the toolbar and replaces sentences. A page on
// another allowed origin that claims to be the embedder hears nothing, and a configure posted by a
// frame that is not the viewer's parent, or from another origin, changes nothing. Served through the
// app's own origin under /porthole/ (as an app that proxies porthole does), the viewer asks for
// nothing at the site's root.

let t: TestServer;
let app: Site;
let otherApp: Site;
let foreign: Site;
let browserHandle: Awaited<ReturnType<typeof launchBrowser>>;
let context: BrowserContext;
const out = testOutputDir('e2e-embed-messages');
const email = 'embed@porthole.test';
const password = 'embed-password-42';

interface Site {
  server: Server;
  origin: string;
  /** Every request path the site was asked for (`upgrade <path>` for a WebSocket), in order. */
  paths: string[];
}

/** Where the sites forward `/porthole/*`: porthole's own address, once it runs. */
let portholeUrl = '';
const prefix = '/porthole';

/**
 * A site whose `/?src=<url>` page frames that URL (id `frame`) and records every message it gets
 * (`window.received`, with the sender's origin); `/?src=…&also=<url>` adds a second frame (`also`).
 * Like an app that must proxy, it forwards `/porthole/*` (HTTP and the WebSocket upgrade) to
 * porthole with the prefix taken off.
 */
async function site(): Promise<Site> {
  const attribute = (value: string) => value.replaceAll('&', '&amp;').replaceAll('"', '&quot;').replaceAll('<', '&lt;');
  const paths: string[] = [];
  const server = createServer((request, response) => {
    const path = request.url ?? '/';
    paths.push(path);
    if (path.startsWith(`${prefix}/`)) {
      const upstream = httpRequest(new URL(path.slice(prefix.length), portholeUrl), { method: request.method, headers: request.headers }, (answer) => {
        response.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(response);
      });
      upstream.on('error', () => response.destroy());
      request.pipe(upstream);
      return;
    }
    const params = new URL(path, 'http://site.invalid').searchParams;
    const src = params.get('src') ?? 'about:blank';
    const also = params.get('also');
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(
      `<!doctype html><title>app</title><script>
        window.received = [];
        window.addEventListener('message', (event) => window.received.push({ origin: event.origin, data: event.data }));
      </script>
      <iframe id="frame" name="viewer" src="${attribute(src)}" width="1300" height="940"></iframe>
      ${also ? `<iframe id="also" src="${attribute(also)}" width="200" height="100"></iframe>` : ''}`,
    );
  });
  server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = request.url ?? '/';
    paths.push(`upgrade ${path}`);
    if (!path.startsWith(`${prefix}/`)) return socket.destroy();
    const target = new URL(portholeUrl);
    const upstream = connect(Number(target.port), target.hostname, () => {
      const headers: string[] = [];
      for (let i = 0; i < request.rawHeaders.length; i += 2) headers.push(`${request.rawHeaders[i]}: ${request.rawHeaders[i + 1]}`);
      upstream.write(`${request.method} ${path.slice(prefix.length)} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n`);
      upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    upstream.on('error', () => socket.destroy());
    socket.on('error', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, paths };
}

before(async () => {
  await mkdir(out, { recursive: true });
  [app, otherApp, foreign] = await Promise.all([site(), site(), site()]);
  t = await startTestServer('e2e-embed-messages', {
    PORTHOLE_ALLOWED_ORIGINS: `${app.origin},${otherApp.origin}`,
    PORTHOLE_DEMO_EMAIL: email,
    PORTHOLE_DEMO_PASSWORD: password,
  });
  portholeUrl = t.server.url;
  browserHandle = await launchBrowser();
  // Room for the demo's sign-in page, button and all, in the framed desktop (as test/e2e/demo-login.test.ts gives it).
  context = await browserHandle.browser.newContext({ viewport: { width: 1400, height: 1000 } });
});
after(async () => {
  await browserHandle?.close();
  await t?.stop();
  for (const s of [app, otherApp, foreign]) s?.server.close();
});

interface Received {
  origin: string;
  data: ViewerMessage;
}

interface Framed {
  page: Page;
  frame: Frame;
  received(): Promise<Received[]>;
  consoleErrors: string[];
}

/** Opens `siteOrigin`'s page framing the session's viewer (with `embedder=`, or the `query` given). */
async function frameViewer(
  siteOrigin: string,
  sessionId: string,
  query: Record<string, string>,
  also?: string,
  viewerAt: (viewerUrl: string) => string = (viewerUrl) => viewerUrl,
): Promise<Framed> {
  const { viewerUrl } = await t.api.createTicket(sessionId);
  const url = new URL(viewerAt(viewerUrl));
  for (const [name, value] of Object.entries(query)) url.searchParams.set(name, value);
  const page = await context.newPage();
  const consoleErrors: string[] = [];
  page.on('console', (message) => message.type() === 'error' && consoleErrors.push(message.text()));
  page.on('pageerror', (error) => consoleErrors.push(String(error)));
  const pageUrl = new URL(siteOrigin);
  pageUrl.searchParams.set('src', url.href);
  if (also) pageUrl.searchParams.set('also', also);
  await page.goto(pageUrl.href);
  const frame = await (await page.waitForSelector('#frame')).contentFrame();
  assert.ok(frame, 'the iframe has a frame');
  return {
    page,
    frame,
    consoleErrors,
    received: () => page.evaluate(() => (window as unknown as { received: Received[] }).received),
  };
}

/** The app page posts a configure message to its viewer frame, as its own script would. */
function configure(framed: Framed, message: Record<string, unknown>): Promise<void> {
  return framed.page.evaluate(({ message, target }) => (document.getElementById('frame') as HTMLIFrameElement).contentWindow!.postMessage(message, target), {
    message: { source: 'porthole-app', v: 1, type: 'configure', ...message },
    target: t.server.url,
  });
}

const ofType = <T extends ViewerMessage['type']>(received: Received[], type: T) =>
  received.filter((r) => r.data.type === type).map((r) => r.data as Extract<ViewerMessage, { type: T }>);

// ---- the demo sign-in through the canvas, in the frame (the demo pages read by test/support/canvas-sign-in.ts) ----

/** Signs in to the demo provider by clicking and typing through the framed viewer's canvas. */
async function signInThroughCanvas(framed: Framed): Promise<void> {
  await signInThroughFramedCanvas(framed.page, framed.frame, { email, password, out });
}

test('an app page on an allowed origin hears hello, every state and, once the sign-in in the frame is done, completed with the account', async () => {
  const session = await t.readySession({ provider: 'demo' });
  const framed = await frameViewer(app.origin, session.id, { embedder: app.origin });
  try {
    await framed.frame.waitForSelector('body[data-phase=connected]', { timeout: 60_000 });
    await signInThroughCanvas(framed);
    const completed = await until(
      'a completed message',
      () => framed.received(),
      (received) => ofType(received, 'completed').length > 0,
      60_000,
      { onTimeout: () => framed.page.screenshot({ path: `${out}/3-not-completed.png` }) },
    );
    await framed.page.screenshot({ path: `${out}/3-completed.png` });
    // A moment for anything (wrongly) posted after the end to arrive too.
    await framed.frame.waitForSelector('body[data-phase=completed]');
    const received = await untilDefined('the final state message', async () => {
      const all = await framed.received();
      return ofType(all, 'state').some((m) => m.phase === 'completed' && m.sentenceKey === 'completed.framed.account') ? all : undefined;
    });

    assert.ok(completed.length > 0);
    assert.ok(
      received.every((r) => r.origin === t.server.url),
      `every message comes from porthole's origin: ${[...new Set(received.map((r) => r.origin))].join(', ')}`,
    );
    assert.ok(received.every((r) => r.data.source === 'porthole-viewer' && r.data.v === 1 && r.data.sessionId === session.id));
    assert.equal(received[0]?.data.type, 'hello', 'hello comes first');
    assert.deepEqual(ofType(received, 'completed'), [{ source: 'porthole-viewer', v: 1, sessionId: session.id, type: 'completed', account: email }], 'once');
    assert.deepEqual(ofType(received, 'failed'), []);
    assert.deepEqual(ofType(received, 'ended'), []);
    const states = ofType(received, 'state');
    const phases = [...new Set(states.map((m) => m.phase))];
    assert.ok(phases.includes('connecting') && phases.includes('connected') && phases.at(-1) === 'completed', phases.join(' → '));
    assert.equal(states.find((m) => m.phase === 'connected')?.sentence, 'Connected to the desktop.');
    assert.ok(
      states.some((m) => m.state === 'authenticating'),
      'the state follows the session',
    );
    const last = states.at(-1)!;
    assert.equal(last.state, 'completed');
    // Framed, the page is the app's: the sentence says who is connected, not that the page may be closed.
    assert.equal(last.sentence, `Connected to porthole demo as ${email}.`);
    assert.equal(last.sentence, await framed.frame.textContent('#panel-sentence'), 'the sentence is the one on screen');
    // Framed, the dashboard is not offered: the app owns navigation.
    assert.equal(await framed.frame.locator('#panel-dashboard').isVisible(), false);
    assert.equal(await framed.frame.locator('#dashboard-link').isVisible(), false);
    assert.equal((await t.api.getSession(session.id)).state, 'completed');
    assert.deepEqual(framed.consoleErrors, [], 'no console errors');
  } finally {
    await framed.page.close();
  }
});

test('configure themes the viewer, hides its toolbar and speaks the app’s words; ended is told once', async () => {
  const session = await t.readySession();
  const framed = await frameViewer(app.origin, session.id, { embedder: app.origin });
  const { frame } = framed;
  try {
    await untilDefined('hello', async () => ofType(await framed.received(), 'hello')[0]);
    await frame.waitForSelector('body[data-phase=connected]', { timeout: 60_000 });
    assert.equal(await frame.locator('header.toolbar').isVisible(), true, 'the toolbar shows until the app hides it');

    await configure(framed, {
      lang: 'de',
      theme: {
        '--stage': 'rgb(12, 70, 52)',
        '--surface': 'rgb(255, 248, 230)',
        '--text': 'rgb(40, 20, 10)',
        '--panel-radius': '2px',
        '--bg': 'red; color: blue',
      },
      hide: ['toolbar'],
      strings: {
        'desktop.connected': 'Mit dem Desktop verbunden.',
        'ended.user': 'Sie haben die Anmeldung beendet.',
        'title.ended': 'Beendet',
      },
    });
    await frame.waitForSelector('html[data-configured=true]');
    assert.equal(await frame.evaluate(() => document.documentElement.lang), 'de');
    assert.equal(await frame.locator('header.toolbar').isVisible(), false, 'the toolbar is hidden');
    // The desktop fills the frame: the stage is as high as the iframe's viewport.
    const stage = (await frame.locator('#stage').boundingBox())!;
    const frameHeight = await frame.evaluate(() => window.innerHeight);
    assert.equal(Math.round(stage.height), frameHeight, 'the stage fills the frame');
    // The desktop follows the larger stage (a remote resize), then draws again: wait for that before the picture.
    await until(
      'the desktop redrawn at the frame’s height',
      () =>
        frame.evaluate(() => {
          const canvas = document.querySelector('#screen canvas') as HTMLCanvasElement;
          const data = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
          let lit = 0;
          for (let i = 0; i < data.length; i += 4 * 97) if (data[i]! + data[i + 1]! + data[i + 2]! > 60) lit++;
          return { height: canvas.height, lit };
        }),
      ({ height, lit }) => height === frameHeight && lit > 100,
      20_000,
    );
    await framed.page.screenshot({ path: `${out}/configured-connected.png` });
    assert.equal(await frame.evaluate(() => getComputedStyle(document.body).backgroundColor), 'rgb(12, 70, 52)');
    assert.equal(
      await frame.evaluate(() => getComputedStyle(document.documentElement).getPropertyValue('--bg').trim()),
      '#f4f5f7',
      'a value with a ; is refused',
    );
    assert.equal(await frame.textContent('#status'), 'Mit dem Desktop verbunden.', 'the sentence on screen is drawn again in the app’s words');
    const connected = await untilDefined('the state in the app’s words', async () =>
      ofType(await framed.received(), 'state').find((m) => m.sentence === 'Mit dem Desktop verbunden.'),
    );
    assert.equal(connected.sentenceKey, 'desktop.connected');

    // The session ends (as the app's backend would end it): the panel says so in the app's words and colours.
    await t.api.endSession(session.id);
    await frame.waitForSelector('body[data-phase=closed]', { timeout: 15_000 });
    assert.equal(await frame.textContent('#panel-title'), 'Beendet');
    assert.equal(await frame.textContent('#panel-sentence'), 'Sie haben die Anmeldung beendet.');
    assert.equal(await frame.locator('#panel-sentence').isVisible(), true);
    const card = await frame.locator('.panel-card').evaluate((el) => ({
      background: getComputedStyle(el).backgroundColor,
      color: getComputedStyle(el).color,
      radius: getComputedStyle(el).borderTopLeftRadius,
    }));
    assert.deepEqual(card, { background: 'rgb(255, 248, 230)', color: 'rgb(40, 20, 10)', radius: '2px' });
    await framed.page.screenshot({ path: `${out}/configured-ended.png` });

    const received = await untilDefined('the ended message', async () => {
      const all = await framed.received();
      return ofType(all, 'ended').length > 0 ? all : undefined;
    });
    assert.deepEqual(ofType(received, 'ended'), [{ source: 'porthole-viewer', v: 1, sessionId: session.id, type: 'ended', reason: 'user' }]);
    assert.deepEqual(ofType(received, 'completed'), []);
    assert.equal(ofType(received, 'state').at(-1)?.state, 'ended');
    assert.deepEqual(
      framed.consoleErrors.filter((e) => !/WebSocket/.test(e)),
      [],
      'no console errors',
    );
  } finally {
    await framed.page.close();
  }
});

test('a session that fails: the app hears failed once, with its code and the person’s sentence; the detail is the operator’s', async () => {
  const session = await t.readySession({ provider: 'demo' });
  const framed = await frameViewer(app.origin, session.id, { embedder: app.origin });
  const { frame } = framed;
  try {
    await frame.waitForSelector('body[data-phase=connected]', { timeout: 60_000 });
    // A credential with made-up tokens, as in test/e2e/dashboard-providers.test.ts: the provider refuses it, the session fails.
    const real = await demoSignIn(t.server.demoOidc!.issuer, undefined, { email, password });
    const forged = JSON.stringify({ ...real, access_token: 'made-up-access-token-0123456789' });
    await assert.rejects(
      t.server.sessions.complete(session.id, { provider: 'demo', file: 'credentials.json', content: forged, expiresAt: null, account: null }),
      { code: 'CREDENTIAL_UNVERIFIED' },
    );
    await frame.waitForSelector('body[data-phase=failed]', { timeout: 15_000 });
    const received = await untilDefined('the failed message', async () => {
      const all = await framed.received();
      return ofType(all, 'failed').length > 0 ? all : undefined;
    });
    const sentence = (await frame.textContent('#panel-sentence')) ?? '';
    assert.equal(sentence, 'Your sign-in could not be confirmed with the provider, so nothing was saved. Start again to sign in once more.');
    assert.deepEqual(ofType(received, 'failed'), [
      { source: 'porthole-viewer', v: 1, sessionId: session.id, type: 'failed', code: 'CREDENTIAL_UNVERIFIED', sentence },
    ]);
    assert.deepEqual([...ofType(received, 'completed'), ...ofType(received, 'ended')], []);
    assert.deepEqual((({ state, phase, sentence }) => ({ state, phase, sentence }))(ofType(received, 'state').at(-1)!), {
      state: 'failed',
      phase: 'failed',
      sentence,
    });
    // The person reads what to do; the code and the provider's answer are under "What porthole checked".
    assert.equal(await frame.textContent('#panel-title'), 'The sign-in could not finish');
    assert.equal(await frame.locator('#diagnosis').isVisible(), true);
    assert.match((await frame.textContent('#operator-detail')) ?? '', /^CREDENTIAL_UNVERIFIED: .*userinfo/);
    await frame.locator('#diagnosis summary').click();
    await framed.page.screenshot({ path: `${out}/failed-details-open.png` });
  } finally {
    await framed.page.close();
  }
});

test('the URL alone embeds: ?lang= and ?hide= without any script; the parent’s origin from ancestorOrigins', async () => {
  const session = await t.readySession();
  const framed = await frameViewer(app.origin, session.id, { lang: 'fr', hide: 'end,paste,nonsense' });
  try {
    await framed.frame.waitForSelector('body[data-phase=connected]', { timeout: 60_000 });
    assert.equal(await framed.frame.evaluate(() => document.documentElement.lang), 'fr');
    assert.equal(await framed.frame.locator('header.toolbar').isVisible(), true);
    assert.equal(await framed.frame.locator('#end-session').isVisible(), false);
    assert.equal(await framed.frame.locator('#paste').isVisible(), false);
    assert.equal(await framed.frame.locator('#status').isVisible(), true);
    // Fullscreen needs the iframe's allow="fullscreen", which this app page does not give: the button is not offered.
    assert.equal(await framed.frame.locator('#fullscreen').isVisible(), false);
    // No embedder= in the URL: Chromium's location.ancestorOrigins names the parent, and the messages reach it.
    const hello = await untilDefined('hello without embedder=', async () => (await framed.received()).find((r) => r.data.type === 'hello'));
    assert.equal(hello.origin, t.server.url);
  } finally {
    await framed.page.close();
    await t.api.endSession(session.id);
  }
});

test('another allowed origin that names the app as embedder hears nothing; a configure from it, or from a frame that is not the parent, changes nothing', async () => {
  const session = await t.readySession();
  // The parent is otherApp, but the URL claims app: the browser drops every message posted to app.
  const impostor = await frameViewer(otherApp.origin, session.id, { embedder: app.origin });
  try {
    await impostor.frame.waitForSelector('body[data-phase=connected]', { timeout: 60_000 });
    await configure(impostor, { hide: ['toolbar'], strings: { 'desktop.connected': 'HIJACKED' } });
    await elapse(1_000, 'a configure from the wrong origin would have applied by now');
    assert.deepEqual(await impostor.received(), [], 'nothing reaches a parent that is not the named embedder');
    assert.equal(await impostor.frame.evaluate(() => document.documentElement.dataset.configured ?? null), null);
    assert.equal(await impostor.frame.locator('header.toolbar').isVisible(), true);
    assert.equal(await impostor.frame.textContent('#status'), 'Connected to the desktop.');
  } finally {
    await impostor.page.close();
  }

  // The right parent, with a foreign frame beside the viewer: the sibling's configure is not the parent's.
  const framed = await frameViewer(app.origin, session.id, { embedder: app.origin }, `${foreign.origin}/`);
  try {
    await framed.frame.waitForSelector('body[data-phase=connected]', { timeout: 60_000 });
    const sibling = await (await framed.page.waitForSelector('#also')).contentFrame();
    assert.ok(sibling);
    await sibling.waitForLoadState('load');
    await sibling.evaluate(() =>
      window.parent.frames[0]!.postMessage(
        {
          source: 'porthole-app',
          v: 1,
          type: 'configure',
          hide: ['toolbar'],
          strings: { 'desktop.connected': 'HIJACKED' },
          theme: { '--stage': 'rgb(255, 0, 0)' },
        },
        '*',
      ),
    );
    // Then the parent's own: once it applies, the sibling's (posted before it) has had its chance.
    await configure(framed, { strings: { 'desktop.connected': 'Connected, in the app’s words.' } });
    await framed.frame.waitForSelector('html[data-configured=true]');
    await until(
      'the parent’s words on screen',
      () => framed.frame.textContent('#status'),
      (text) => text === 'Connected, in the app’s words.',
      5_000,
    );
    assert.equal(await framed.frame.locator('header.toolbar').isVisible(), true, 'the sibling could not hide the toolbar');
    assert.notEqual(await framed.frame.evaluate(() => getComputedStyle(document.body).backgroundColor), 'rgb(255, 0, 0)');
    await framed.page.screenshot({ path: `${out}/sibling-ignored.png` });
  } finally {
    await framed.page.close();
    await t.api.endSession(session.id);
  }
});

test('served through the app’s own origin under a path prefix, the viewer finds its assets, API and WebSocket under that prefix', async () => {
  const session = await t.readySession();
  const before = app.paths.length;
  // The app's page and the viewer are on one origin now: https://app.example/porthole/v1/sessions/… in production.
  const framed = await frameViewer(app.origin, session.id, { embedder: app.origin }, undefined, (viewerUrl) => {
    const url = new URL(viewerUrl);
    return `${app.origin}${prefix}${url.pathname}${url.search}`;
  });
  try {
    await framed.frame.waitForSelector('body[data-phase=connected]', { timeout: 60_000 });
    assert.equal(new URL(framed.frame.url()).pathname, `${prefix}/v1/sessions/${session.id}/viewer`);
    assert.equal(await framed.frame.evaluate(() => (window as unknown as { porthole: { sessionId: string } }).porthole.sessionId), session.id);
    // The renewal happens at once on a live session: wait for it to have gone through the prefix too.
    const paths = await until(
      'the ticket renewal through the prefix',
      () => app.paths.slice(before),
      (seen) => seen.some((path) => path === `${prefix}/v1/sessions/${session.id}/ticket`),
      10_000,
    );
    // The app's own page (and the browser's /favicon.ico for it) aside.
    const viaApp = paths.filter((path) => !path.startsWith('/?') && path !== '/favicon.ico');
    const expected = [
      `${prefix}/assets/viewer.js?v=`,
      `${prefix}/assets/porthole.css?v=`,
      `${prefix}/v1/sessions/${session.id}?`,
      `upgrade ${prefix}/v1/sessions/${session.id}/vnc?ticket=`,
    ];
    for (const start of expected) {
      assert.ok(
        viaApp.some((path) => `${path}?`.startsWith(start)),
        `${start}… went through the prefix: ${viaApp.map((p) => p.replace(/ticket=[^&]+/, 'ticket=…')).join(', ')}`,
      );
    }
    assert.deepEqual(
      viaApp.filter((path) => !path.startsWith(`${prefix}/`) && !path.startsWith(`upgrade ${prefix}/`)),
      [],
      'nothing at the site’s root: no /assets/, no /v1/',
    );
    const hello = await untilDefined('hello', async () => ofType(await framed.received(), 'hello')[0]);
    assert.equal(hello.sessionId, session.id);
    assert.deepEqual(framed.consoleErrors, []);
  } finally {
    await framed.page.close();
    await t.api.endSession(session.id);
  }
});

test('a boot timeout: the person reads that the desktop took too long and what to do; the step, its error and the code are the operator’s', async () => {
  // An agent that starts but never answers its health check, as test/server/boot.test.ts makes one.
  const scratch = await mkdtemp(join(tmpdir(), 'porthole-test-agent-'));
  await chmod(scratch, 0o755); // the sandbox uid reads the bundle from here
  const silentAgent = join(scratch, 'silent-agent.mjs');
  await writeFile(silentAgent, 'setInterval(() => {}, 60_000); // never serves GET /health\n');
  // Explicitly: the server started in before() set this process's umask to 077, and a bundle the
  // sandbox uid cannot read dies on EACCES (a failed start, not the silent agent this test wants).
  await chmod(silentAgent, 0o644);
  const slow = await startTestServer('e2e-embed-boot-timeout', { PORTHOLE_BOOT_TIMEOUT_MS: '4000' }, { agentBundle: silentAgent });
  const page = await context.newPage();
  try {
    const created = await slow.api.createSession({});
    const { viewerUrl } = await slow.api.createTicket(created.id);
    await page.goto(viewerUrl);
    await page.waitForSelector('body[data-phase=failed]', { timeout: 30_000 });
    // The record first: when the page says something else, the failure's own code and detail say why.
    const failed = await slow.api.getSession(created.id);
    assert.equal(failed.reason, 'BOOT_TIMEOUT', `the session failed otherwise: ${failed.reason}: ${failed.detail}`);
    const sentence = (await page.textContent('#panel-sentence')) ?? '';
    assert.equal(sentence, 'The desktop took too long to start. Start again to try once more.');
    assert.equal(await page.textContent('#status'), sentence);
    // The checklist shows where start-up stopped, in the person's words, without its error. Which
    // step missed the deadline depends on the machine's load (the sandbox step, on a busy one).
    const failedStep = await page.locator('#steps [data-step-state=failed]').getAttribute('data-step');
    assert.ok(failedStep === 'agent' || failedStep === 'sandbox', `the failed step: ${failedStep}`);
    assert.equal(await page.locator('#steps').isVisible(), true);
    assert.equal(await page.locator('#steps .step-error').count(), 0);
    assert.doesNotMatch(await page.locator('#steps').innerText(), /did not answer|BOOT_TIMEOUT|sandbox agent|sock/i);
    // Under "What porthole checked": the code, the server's detail and the failed step with its error.
    await page.locator('#diagnosis summary').click();
    assert.match(
      (await page.textContent('#operator-detail')) ?? '',
      new RegExp(`^BOOT_TIMEOUT: .*Start-up step "${failedStep}" \\(.+\\) did not answer within 4000 ms`),
    );
    assert.match((await page.textContent('#failed-step')) ?? '', /^Failed step: /);
    assert.equal(await page.getAttribute('#failed-step', 'data-step'), failedStep);
    await page.screenshot({ path: `${out}/boot-timeout.png` });
  } finally {
    await page.close();
    await slow.stop();
    await rm(scratch, { recursive: true, force: true });
  }
});
