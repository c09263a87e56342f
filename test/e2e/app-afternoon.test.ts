import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { launchBrowser } from '../support/browser.js';
import { signInThroughFramedCanvas } from '../support/canvas-sign-in.js';
import { freeLoopbackPort } from '../support/nginx.js';
import { startTestServer, testApiKey, testOutputDir, type TestServer } from '../support/server.js';
import { until } from '../support/until.js';

// The app developer's afternoon, as one test: the example Next.js app (examples/next, real `next`,
// built and started here) has its own API key with a webhook. A person opens the app, clicks
// Connect; the app's server starts a session with the SDK, the viewer loads in the page through
// the app's own origin (the SDK's proxy, WebSocket included), and the demo sign-in is done through
// the canvas. The app learns of it three ways: the viewer's `completed` message in the page, the
// webhook (verified by the SDK) and the SSE stream its server follows. The app's key reads the
// credential; another app's key may not.

const root = fileURLToPath(new URL('../../../', import.meta.url));
const exampleDir = join(root, 'examples/next');
const out = testOutputDir('e2e-app-afternoon');
const email = 'demo@porthole.test';
const password = 'demo-password';

let t: TestServer;
let app: { process: ChildProcess; origin: string } | undefined;
let appKey: { id: string; key: string; webhookSecret: string };
let otherKey: { id: string; key: string };
let browserHandle: Awaited<ReturnType<typeof launchBrowser>>;

async function admin<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(`${t.server.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${testApiKey}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${text}`);
  return JSON.parse(text) as T;
}

/** Every file `next build` reads (the app's sources and lock, the SDK's built files), hashed: the build is reused while it matches. */
async function buildInputsHash(): Promise<string> {
  const hash = createHash('sha256');
  const add = async (dir: string, keep: (name: string) => boolean) => {
    const entries = (await readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile() && keep(e.name));
    for (const path of entries.map((e) => join(e.parentPath, e.name)).sort()) {
      hash
        .update(relative(root, path))
        .update('\0')
        .update(await readFile(path))
        .update('\0');
    }
  };
  await add(join(exampleDir, 'app'), () => true);
  await add(join(exampleDir, 'lib'), () => true);
  for (const file of ['next.config.mjs', 'package.json', 'package-lock.json']) hash.update(file).update(await readFile(join(exampleDir, file)));
  await add(join(root, 'sdk/dist'), (name) => !name.endsWith('.map'));
  return hash.digest('hex');
}

/** The SDK's build (sdk/dist), made again when a source is newer: the example imports it from there. */
async function ensureSdkBuilt(): Promise<void> {
  const built = await stat(join(root, 'sdk/dist/index.js')).catch(() => null);
  const sources = await readdir(join(root, 'sdk/src'));
  const newest = Math.max(...(await Promise.all(sources.map(async (name) => (await stat(join(root, 'sdk/src', name))).mtimeMs))));
  if (built && built.mtimeMs >= newest) return;
  const build = spawn(process.execPath, [join(root, 'scripts/build-sdk.mjs')], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let errors = '';
  for (const stream of [build.stdout!, build.stderr!]) stream.on('data', (chunk: Buffer) => (errors += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => build.once('close', resolve));
  if (code !== 0) throw new Error(`scripts/build-sdk.mjs exited ${code}: ${errors}`);
}

/** `next build`, unless .next holds a build of the same inputs. Returns what it did and how long it took. */
async function buildExample(): Promise<string> {
  await ensureSdkBuilt();
  if (!existsSync(join(exampleDir, 'node_modules/next'))) throw new Error('examples/next/node_modules is missing: run scripts/setup.sh --test');
  const inputs = await buildInputsHash();
  const stamp = join(exampleDir, '.next/porthole-inputs.sha256');
  if (existsSync(join(exampleDir, '.next/BUILD_ID')) && (await readFile(stamp, 'utf8').catch(() => '')) === inputs) return 'reused .next (inputs unchanged)';
  const started = Date.now();
  const log = createWriteStream(join(out, 'next-build.log'));
  const build = spawn(process.execPath, [join(exampleDir, 'node_modules/next/dist/bin/next'), 'build'], {
    cwd: exampleDir,
    env: { ...process.env, NEXT_TELEMETRY_DISABLED: '1', NODE_ENV: 'production' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  build.stdout!.pipe(log);
  build.stderr!.pipe(log);
  const code = await new Promise<number | null>((resolve) => build.once('close', resolve));
  if (code !== 0) throw new Error(`next build exited ${code}: see ${join(out, 'next-build.log')}`);
  await writeFile(stamp, inputs);
  return `next build in ${((Date.now() - started) / 1000).toFixed(1)} s`;
}

/** The example's own server (server.mjs), in its own process group, its output in the test's folder. */
async function startExample(port: number): Promise<{ process: ChildProcess; origin: string }> {
  const log = createWriteStream(join(out, 'app.log'));
  // The title puts 'porthole-test-' in its command line: scripts/test.mjs's leak check names it if it outlives the test.
  const child = spawn(process.execPath, ['--title=porthole-test-example-next', 'server.mjs'], {
    cwd: exampleDir,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      NODE_ENV: 'production',
      NEXT_TELEMETRY_DISABLED: '1',
      HOST: '127.0.0.1',
      PORT: String(port),
      PORTHOLE_URL: t.server.url,
      PORTHOLE_API_KEY: appKey.key,
      PORTHOLE_WEBHOOK_SECRET: appKey.webhookSecret,
    },
  });
  child.stdout!.pipe(log);
  child.stderr!.pipe(log);
  const origin = `http://127.0.0.1:${port}`;
  await until(
    `the example app answers at ${origin} (log: ${join(out, 'app.log')})`,
    async () => {
      if (child.exitCode !== null) throw new Error(`the example app exited ${child.exitCode} (log: ${join(out, 'app.log')})`);
      return (await fetch(`${origin}/api/status`).catch(() => null))?.status ?? 0;
    },
    (status) => status === 200,
    60_000,
  );
  return { process: child, origin };
}

async function stopExample(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.pid === undefined) return;
  const closed = new Promise((resolve) => child.once('close', resolve));
  process.kill(-child.pid, 'SIGTERM');
  const timer = setTimeout(() => child.pid && process.kill(-child.pid, 'SIGKILL'), 5_000);
  await closed;
  clearTimeout(timer);
}

before(async () => {
  await mkdir(out, { recursive: true });
  const appPort = await freeLoopbackPort();
  const appOrigin = `http://127.0.0.1:${appPort}`;
  const built = buildExample();
  // The viewer's WebSocket comes from the app's page, through its proxy, with the app's Origin.
  t = await startTestServer('e2e-app-afternoon', { PORTHOLE_ALLOWED_ORIGINS: appOrigin });
  appKey = await admin('POST', '/v1/keys', { name: 'example-app', webhookUrl: `${appOrigin}/api/webhooks/porthole` });
  otherKey = await admin('POST', '/v1/keys', { name: 'another-app' });
  assert.match(appKey.key, /^ph_/);
  assert.match(appKey.webhookSecret, /^whsec_/);
  console.log(`examples/next: ${await built}`);
  app = await startExample(appPort);
  browserHandle = await launchBrowser();
});
after(async () => {
  await browserHandle?.close();
  if (app) await stopExample(app.process);
  await t?.stop();
});

/** Signs in to the demo provider by clicking and typing through the viewer's canvas, inside the app's page. */
test("an app's afternoon: connect through the app's own origin, learn it by message, webhook and SSE, read the credential with the app's key", async () => {
  const context = await browserHandle.browser.newContext({ viewport: { width: 1400, height: 1250 } });
  const p = await context.newPage();
  const portholeRequests: string[] = [];
  p.on('request', (request) => {
    if (request.url().startsWith(t.server.url)) portholeRequests.push(request.url());
  });
  const sockets: string[] = [];
  p.on('websocket', (socket) => sockets.push(socket.url()));
  await p.goto(app!.origin);
  await p.click('#connect');

  // The viewer is framed from the app's own origin, through the proxy.
  const frameElement = await p.waitForSelector('#viewer iframe', { timeout: 30_000 });
  const viewer = (await frameElement.contentFrame())!;
  assert.ok(viewer, 'the viewer has a frame');
  const viewerUrl = new URL(viewer.url());
  assert.equal(viewerUrl.origin, app!.origin);
  assert.match(viewerUrl.pathname, /^\/porthole\/v1\/sessions\/ses_[0-9a-z]+\/viewer$/);
  const sessionId = /\/sessions\/([^/]+)\//.exec(viewerUrl.pathname)![1]!;
  await viewer.waitForSelector('body[data-phase=connected]', { timeout: 60_000 });

  await signInThroughFramedCanvas(p, viewer, { email, password, out });

  // The page learns it from the viewer's message.
  await p.waitForSelector('#connected', { timeout: 60_000 });
  assert.equal(await p.textContent('#connected'), `Connected as ${email}`);
  await p.screenshot({ path: join(out, '4-connected.png') });
  assert.deepEqual(portholeRequests, [], 'the browser never talked to porthole itself');
  const wsOrigin = app!.origin.replace('http:', 'ws:');
  assert.ok(sockets.length > 0, 'the viewer opened its WebSocket');
  for (const url of sockets) assert.ok(url.startsWith(`${wsOrigin}/porthole/v1/sessions/${sessionId}/vnc?`), `the WebSocket went through the app: ${url}`);

  // The app's server learns it from the webhook (verified by the SDK) and from the live stream.
  const seen = await until(
    "the app's /api/status shows session.completed by webhook and by SSE",
    async () =>
      (await (await fetch(`${app!.origin}/api/status`)).json()) as {
        webhooks: Array<{ id: string; type: string; sessionId: string; state: string }>;
        states: Record<string, string[]>;
      },
    (s) => s.webhooks.some((w) => w.type === 'session.completed' && w.sessionId === sessionId) && (s.states[sessionId] ?? []).includes('completed'),
    30_000,
  );
  const completed = seen.webhooks.find((w) => w.type === 'session.completed')!;
  assert.equal(completed.state, 'completed');
  assert.match(completed.id, /^msg_/);
  assert.deepEqual(
    seen.webhooks
      .filter((w) => w.sessionId === sessionId)
      .map((w) => w.type)
      .sort(),
    ['session.completed', 'session.ready'],
    'each webhook once',
  );
  const states = seen.states[sessionId]!;
  assert.equal(states.at(-1), 'completed');
  assert.ok(states.includes('ready'), `the stream showed the session ready: ${states.join(' → ')}`);

  // The app's key reads the credential; another app's key may not; the browser's side of the proxy cannot at all.
  const read = (key: string) => fetch(`${t.server.url}/v1/sessions/${sessionId}/credentials`, { headers: { authorization: `Bearer ${key}` } });
  const own = await read(appKey.key);
  assert.equal(own.status, 200);
  const credential = (await own.json()) as { provider: string; account: string | null; file: string };
  assert.equal(credential.provider, 'demo');
  assert.equal(credential.account, email);
  const other = await read(otherKey.key);
  assert.equal(other.status, 403);
  assert.equal(((await other.json()) as { error: { code: string } }).error.code, 'SESSION_FORBIDDEN');
  // Through the app's proxy, even with a key in hand, nothing but the viewer's surface: a Bearer
  // header is dropped (a ticket is what the viewer's routes take), the rest is not forwarded at all.
  const viaProxy = async (method: string, path: string) => {
    const response = await fetch(`${app!.origin}/porthole${path}`, { method, headers: { authorization: `Bearer ${appKey.key}` } });
    return `${response.status} ${((await response.json()) as { error: { code: string } }).error.code}`;
  };
  assert.equal(await viaProxy('GET', `/v1/sessions/${sessionId}/credentials`), '404 ROUTE_NOT_FOUND');
  assert.equal(await viaProxy('GET', '/v1/sessions'), '404 ROUTE_NOT_FOUND');
  assert.equal(await viaProxy('POST', '/v1/keys'), '404 ROUTE_NOT_FOUND');
  assert.equal(await viaProxy('GET', '/'), '404 ROUTE_NOT_FOUND');
  assert.equal(await viaProxy('GET', `/v1/sessions/${sessionId}`), '401 TICKET_MISSING');

  await p.screenshot({ path: join(out, '5-app-page.png'), fullPage: true });
  await context.close();
});
