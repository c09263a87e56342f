// What a person actually waits for: from POST /v1/sessions (provider "demo") until the demo
// provider's sign-in page is drawn in the viewer's canvas, in a real Chromium that opened the viewer
// URL as the dashboard does (POST the session, POST its ticket, go to the ticket's viewerUrl). Two
// series of BENCH_SESSIONS sessions each (default 10): cold (PORTHOLE_WARM_POOL=0, every sandbox
// started for its session) and warm (PORTHOLE_WARM_POOL=1, a pooled desktop taken; the bench waits
// for the pool to refill between sessions). p50 and p95 of each milestone since the POST: the
// start-up steps from the session's timeline (sandbox, agent, vnc, login = the CLI started), the
// agent's report that the CLI opened the browser on the auth URL, the page painted in the sandbox's
// framebuffer, the viewer page loaded, connected, its first frame, and the sign-in page in its canvas.
//
// The page is found by its pixels: the sign-in page's brand bar and logo are a blue (#2f6fde)
// nothing else on the desktop has. The agent cannot say when the page is drawn: its report
// (login.browser_opened) is sent when it hands the URL to Chromium, before the page is fetched. So
// the page is looked for twice, and the two must agree: in the viewer's canvas (polled every 25 ms
// from inside the page, on the page's own clock), and in the sandbox's framebuffer, read straight
// from its VNC socket by a second RFB client on a thread of its own (bench/framebuffer-colour.ts).
// Both are clients of the same Xvnc, served one after the other, so either may see the page first;
// the bench prints how far apart the two sightings are and how many agree within ±250 ms.
//
// Baseline in the same run, between the cold sessions: Xvnc, openbox and Chromium started by hand
// (no porthole, no sandbox; Chromium as root needs --no-sandbox) on the same sign-in URL the CLI
// opens, at porthole's desktop size, with the same RFB client on Xvnc's socket; the clock runs
// from Xvnc's spawn until the blue shows in the framebuffer. The ratio porthole / baseline is the
// start-up porthole adds. Progress goes to stderr, the table to stdout. Nothing leaves 127.0.0.1.
//   node dist/bench/start-to-sign-in.js            (BENCH_SESSIONS=3 for a quick look)
// BENCH_VIEWER=0 opens no viewer: on a small host the viewer's own browser (noVNC decoding every
// frame) competes with the sandbox for the same cores, where a person's browser runs on their own
// machine. The total is then the page in the sandbox's framebuffer.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Browser } from 'playwright-core';
import type { SessionId } from '../src/protocol/ids.js';
import type { SessionEvent } from '../src/protocol/session.js';
import { launchBrowser } from '../test/support/browser.js';
import { startTestServer, testApiKey, type TestServer } from '../test/support/server.js';
import { type FramebufferSighting, wallClock, watchSocketInWorker } from './framebuffer-colour.js';
import { signInPage, watchSessionFramebuffer } from './session-framebuffer.js';
import { percentile } from './rfb-client.js';

const sessions = Number(process.env.BENCH_SESSIONS ?? 10);
const withViewer = process.env.BENCH_VIEWER !== '0';
/** One session's whole run, from the POST to the page in the canvas; a miss beyond this is a failure, not a sample. */
const sessionTimeoutMs = 90_000;
const canvasPollMs = 25;
/** The viewer's window: the viewer sizes the remote desktop to it, close to porthole's default 1280x800. */
const viewport = { width: 1280, height: 860 };

/**
 * The two sightings agree when they are this close, either way round: Xvnc serves its two clients
 * (the relay's and the watcher's) one after the other, and the canvas is polled, so either may see
 * the update first; seconds apart would mean they saw different things.
 */
const agreementMs = 250;

type Milestone =
  | 'sandbox'
  | 'agent'
  | 'vnc'
  | 'cliStarted'
  | 'browserOpened'
  | 'painted'
  | 'viewerLoaded'
  | 'viewerConnected'
  | 'firstFrame'
  | 'signInInCanvas';

const milestoneLabels: Record<Milestone, string> = {
  sandbox: 'step sandbox done',
  agent: 'step agent done',
  vnc: 'step vnc done',
  cliStarted: 'CLI started (step login done)',
  browserOpened: 'browser on the auth URL (login.browser_opened)',
  painted: 'page painted (sandbox framebuffer, own RFB)',
  viewerLoaded: 'viewer page loaded (load event)',
  viewerConnected: 'viewer connected (data-phase=connected)',
  firstFrame: 'first frame in the viewer canvas',
  signInInCanvas: 'sign-in page in the viewer canvas',
};

const stepNames = ['sandbox', 'agent', 'vnc', 'login'] as const;

interface Sample {
  /** Milestone → ms since the POST; NaN when it was not seen. */
  since: Record<Milestone, number>;
  /** Each start-up step's own duration (its step.succeeded `details.ms`). */
  stepMs: Record<(typeof stepNames)[number], number>;
  /** The sandbox step says it took a pooled desktop (`details.warm`). */
  isWarm: boolean;
  /** The framebuffer client connected after the page was drawn: its time is an upper bound. */
  isPaintedUpperBound: boolean;
}

interface Series {
  name: string;
  samples: Sample[];
  note: string | null;
  /** Sessions that did not reach the sign-in page (start failed, timed out): each one's sentence. */
  failures: string[];
}

interface CanvasTimes {
  /** null without a viewer (BENCH_VIEWER=0). */
  loadedAt: number | null;
  connectedAt: number | null;
  firstFrameAt: number | null;
  foundAt: number;
}

interface CanvasWatchOptions {
  rgb: readonly number[];
  tolerance: number;
  minPixels: number;
  topFraction: number;
  pollMs: number;
  timeoutMs: number;
}

/**
 * Runs inside the viewer page (serialised by page.evaluate: it must not use anything of this module).
 * Polls noVNC's canvas until the target colour shows, on the page's own clock (wall-clock ms, as
 * wallClock() reads on this side). First frame: the first poll that finds a drawn pixel (noVNC's
 * canvas is transparent until its first update is flipped onto it).
 */
function watchCanvas(o: CanvasWatchOptions): Promise<CanvasTimes> {
  const now = () => performance.timeOrigin + performance.now();
  const navigation = performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming | undefined;
  const loadedAt = performance.timeOrigin + (navigation ? navigation.loadEventEnd || navigation.loadEventStart : 0);
  return new Promise((resolve, reject) => {
    let connectedAt: number | null = document.body.dataset.phase === 'connected' ? now() : null;
    let firstFrameAt: number | null = null;
    const observer = new MutationObserver(() => {
      if (connectedAt === null && document.body.dataset.phase === 'connected') connectedAt = now();
    });
    observer.observe(document.body, { attributes: true, attributeFilter: ['data-phase'] });
    const deadline = now() + o.timeoutMs;
    const finish = (error: Error | null, foundAt = 0) => {
      clearInterval(timer);
      observer.disconnect();
      if (error) reject(error);
      else resolve({ loadedAt, connectedAt, firstFrameAt, foundAt });
    };
    const timer = setInterval(() => {
      const at = now();
      const phase = document.body.dataset.phase;
      if (phase === 'failed' || phase === 'closed') return finish(new Error(`the viewer is ${phase}: ${document.querySelector('#status')?.textContent}`));
      if (at > deadline) return finish(new Error(`no sign-in page in the canvas within ${o.timeoutMs} ms (viewer ${phase})`));
      const canvas = document.querySelector<HTMLCanvasElement>('#screen canvas');
      if (!canvas || canvas.width === 0 || canvas.height === 0) return;
      const rows = Math.round(canvas.height * o.topFraction);
      const data = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, rows).data;
      let isDrawn = false;
      let n = 0;
      for (let i = 0; i < data.length; i += 4) {
        if (data[i + 3] !== 0) isDrawn = true;
        if (
          Math.abs(data[i]! - o.rgb[0]!) <= o.tolerance &&
          Math.abs(data[i + 1]! - o.rgb[1]!) <= o.tolerance &&
          Math.abs(data[i + 2]! - o.rgb[2]!) <= o.tolerance
        )
          n++;
      }
      if (isDrawn && firstFrameAt === null) firstFrameAt = at;
      if (n >= o.minPixels) finish(null, at);
    }, o.pollMs);
  });
}

function eventAt(events: readonly SessionEvent[], type: SessionEvent['type'], step?: string): number {
  const event = events.find((e) => e.type === type && (step === undefined || e.details.step === step));
  return event ? Date.parse(event.at) : Number.NaN;
}

async function runSession(t: TestServer, browser: Browser): Promise<Sample> {
  // The person's browser is already open: its context and page are not part of the wait.
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const stop = new AbortController();
  let sessionId: string | null = null;
  try {
    const postedAt = wallClock();
    const created = await t.api.createSession({ provider: 'demo' });
    sessionId = created.id;
    const framebuffer = watchSessionFramebuffer(t, created.id, sessionTimeoutMs, AbortSignal.any([stop.signal, AbortSignal.timeout(sessionTimeoutMs)]));
    // Read on failure only; a rejection meanwhile must not go unhandled.
    framebuffer.catch(() => {});
    let canvas: CanvasTimes;
    let painted: FramebufferSighting | null;
    if (withViewer) {
      const { viewerUrl } = await t.api.createTicket(created.id);
      await page.goto(viewerUrl);
      canvas = await page.evaluate(watchCanvas, { ...signInPage, pollMs: canvasPollMs, timeoutMs: sessionTimeoutMs });
      // The socket's client saw the page first, or never will: a short grace, then the sample goes without it.
      painted = await Promise.race([framebuffer, sleep(10_000, null, { ref: false })]).catch(() => null);
    } else {
      painted = await framebuffer;
      canvas = { loadedAt: null, connectedAt: null, firstFrameAt: null, foundAt: painted.foundAt };
    }
    const { events } = await t.api.listEvents(created.id);
    const since = (at: number | null | undefined) => (at === null || at === undefined ? Number.NaN : at - postedAt);
    const stepMs = Object.fromEntries(
      stepNames.map((step) => [step, Number(events.find((e) => e.type === 'step.succeeded' && e.details.step === step)?.details.ms ?? Number.NaN)]),
    ) as Sample['stepMs'];
    const sandboxStep = events.find((e) => e.type === 'step.succeeded' && e.details.step === 'sandbox');
    const sample: Sample = {
      since: {
        sandbox: since(eventAt(events, 'step.succeeded', 'sandbox')),
        agent: since(eventAt(events, 'step.succeeded', 'agent')),
        vnc: since(eventAt(events, 'step.succeeded', 'vnc')),
        cliStarted: since(eventAt(events, 'step.succeeded', 'login')),
        browserOpened: since(eventAt(events, 'login.browser_opened')),
        painted: since(painted?.foundAt),
        viewerLoaded: since(canvas.loadedAt),
        viewerConnected: since(canvas.connectedAt),
        firstFrame: since(canvas.firstFrameAt),
        signInInCanvas: since(canvas.foundAt),
      },
      stepMs,
      isWarm: sandboxStep?.details.warm === true,
      isPaintedUpperBound: painted?.wasAlreadyThere ?? false,
    };
    return sample;
  } catch (error) {
    const detail = sessionId ? await t.api.getSession(sessionId).catch(() => null) : null;
    throw new Error(`session ${sessionId ?? '(not created)'}: ${(error as Error).message}; state ${detail?.state} ${detail?.detail ?? ''}; log: ${t.logFile}`, {
      cause: error,
    });
  } finally {
    stop.abort();
    await context.close().catch(() => {});
    if (sessionId) await t.server.sessions.end(sessionId as SessionId, 'user').catch(() => {});
  }
}

/** The warm pool's ready gauge from /metrics, or null when the server has no such metric (no warm pool in this build). */
async function warmPoolReady(t: TestServer): Promise<number | null> {
  const response = await fetch(`${t.server.url}/metrics`, { headers: { authorization: `Bearer ${testApiKey}` } });
  const text = await response.text();
  const match = /^porthole_warm_pool_ready(?:\{[^}]*\})? ([0-9.e+-]+)$/m.exec(text);
  return match ? Number(match[1]) : null;
}

/** Waits until the pool holds a ready desktop; false when the metric does not exist or the pool stays empty for `timeoutMs`. */
async function untilWarmPoolReady(t: TestServer, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ready = await warmPoolReady(t);
    if (ready === null) return false;
    if (ready >= 1) return true;
    if (Date.now() > deadline) return false;
    await sleep(100);
  }
}

/** Between cold sessions: the last sandbox is gone, so its teardown does not load the next start. */
async function untilNoSandbox(t: TestServer): Promise<void> {
  const deadline = Date.now() + 30_000;
  while ((await t.server.driver.list()).length > 0 && Date.now() < deadline) await sleep(100);
}

// ---- the baseline: Xvnc + openbox + Chromium by hand ----

/** The same kind of authorization URL the demo CLI opens (code flow with PKCE, a loopback redirect): the issuer answers with its sign-in page. */
function signInUrl(issuer: string, clientId: string): string {
  const url = new URL('/auth', issuer);
  url.search = new URLSearchParams({
    client_id: clientId,
    response_type: 'code',
    redirect_uri: 'http://127.0.0.1:9/callback',
    scope: 'openid email profile offline_access',
    code_challenge: createHash('sha256').update(randomBytes(32).toString('base64url')).digest('base64url'),
    code_challenge_method: 'S256',
    state: randomBytes(8).toString('hex'),
  }).toString();
  return url.href;
}

/** A display number no X server on this host holds (neither its lock nor its socket is there). */
function freeDisplay(): number {
  for (let n = 90; n < 200; n++) if (!existsSync(`/tmp/.X${n}-lock`) && !existsSync(`/tmp/.X11-unix/X${n}`)) return n;
  throw new Error('no free X display between :90 and :199');
}

async function untilPaths(paths: readonly string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!paths.every((path) => existsSync(path))) {
    if (Date.now() > deadline) throw new Error(`${paths.join(' and ')} did not appear within ${timeoutMs} ms`);
    await sleep(5);
  }
}

/**
 * The process groups of the baseline's processes while they run. Spawned detached (so that a whole
 * Chromium, helpers included, ends with its group), they would outlive an interrupted bench: on the
 * way out, whatever is left gets SIGKILL.
 */
const liveGroups = new Set<number>();
process.once('exit', () => {
  for (const pid of liveGroups) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // Gone already.
    }
  }
});
// Ctrl-C and kill leave through process.exit, so that the 'exit' hook above runs.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(signal === 'SIGINT' ? 130 : 143));

/** Ends a process this bench spawned (its own process group, spawned detached): TERM, then KILL for what is left. */
async function endGroup(child: ChildProcess): Promise<void> {
  if (child.pid === undefined) return;
  liveGroups.delete(child.pid);
  const exited = child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((resolve) => child.once('exit', resolve));
  try {
    process.kill(-child.pid, 'SIGTERM');
  } catch {
    return; // the group is gone already
  }
  await Promise.race([exited, sleep(3_000, undefined, { ref: false })]);
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // Everything ended on TERM.
  }
  await exited;
}

interface BaselineSample {
  displayUp: number;
  firstUpdate: number;
  signIn: number;
}

async function runBaseline(url: string, width: number, height: number): Promise<BaselineSample> {
  const dir = await mkdtemp(join(tmpdir(), 'porthole-bench-baseline-'));
  const display = freeDisplay();
  const vncSocket = join(dir, 'vnc.sock');
  const children: ChildProcess[] = [];
  const stop = new AbortController();
  // Porthole's desktop flags (src/agent/desktop.ts) on a display of its own, and a HOME of its own so that root's is not touched.
  const env = { ...process.env, DISPLAY: `:${display}`, HOME: dir };
  const start = (command: string, args: string[]) => {
    const child = spawn(command, args, { env, stdio: 'ignore', detached: true });
    child.on('error', () => {});
    if (child.pid !== undefined) liveGroups.add(child.pid);
    children.push(child);
    return child;
  };
  try {
    // The watcher's thread starts before the clock does, and is given a moment to load so that its
    // start-up does not take CPU from the desktop's; it connects once Xvnc listens.
    const watching = watchSocketInWorker(vncSocket, signInPage, sessionTimeoutMs, stop.signal);
    watching.catch(() => {});
    await sleep(300);
    const spawnedAt = wallClock();
    start('Xvnc', [
      `:${display}`,
      ...['-rfbport', '-1', '-rfbunixpath', vncSocket, '-SecurityTypes', 'None'],
      ...['-geometry', `${width}x${height}`, '-depth', '24', '-extension', 'GLX'],
      ...['-nolisten', 'tcp', '-nolisten', 'local'],
      ...['-AlwaysShared', '-AcceptSetDesktopSize', '-desktop', 'baseline', '-UseBlacklist=0'],
    ]);
    await untilPaths([`/tmp/.X11-unix/X${display}`, vncSocket], 15_000);
    const displayUp = wallClock();
    start('openbox', []);
    const browserHeight = Math.round(height * 0.62);
    start('chromium', [
      // Chromium refuses to run as root with its own sandbox on; porthole's keeps it, running as the sandbox's uid.
      '--no-sandbox',
      ...['--no-first-run', '--no-default-browser-check', '--disable-background-networking', '--disable-component-update'],
      ...['--disable-sync', '--password-store=basic', `--user-data-dir=${join(dir, 'chromium')}`, '--disable-quic'],
      ...['--disable-extensions', '--no-pings', '--disable-domain-reliability', '--disable-client-side-phishing-detection', '--disable-default-apps'],
      '--disable-features=OptimizationHints,OptimizationHintsFetching,OptimizationGuideModelDownloading,OptimizationTargetPrediction,MediaRouter,Translate',
      // Loopback only, as the test server's sandboxes: the sign-in page is on 127.0.0.1 and nothing else is reached.
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1',
      '--window-position=0,0',
      `--window-size=${width},${browserHeight}`,
      url,
    ]);
    const sighting = await watching;
    return { displayUp: displayUp - spawnedAt, firstUpdate: sighting.firstUpdateAt - spawnedAt, signIn: sighting.foundAt - spawnedAt };
  } finally {
    stop.abort();
    // Chromium and openbox first, then the X server they draw on.
    await Promise.all(children.slice(1).map(endGroup));
    if (children[0]) await endGroup(children[0]);
    await rm(dir, { recursive: true, force: true });
  }
}

// ---- the run ----

const cold: Series = { name: 'cold', samples: [], note: null, failures: [] };
const warm: Series = { name: 'warm', samples: [], note: null, failures: [] };
const baseline: BaselineSample[] = [];
const baselineFailures: string[] = [];
const browserHandle = await launchBrowser();
const log = (line: string) => process.stderr.write(`${line}\n`);

/** One session of a series: its sample, or its failure, which is reported and does not end the run. */
async function sampleSession(t: TestServer, series: Series, i: number): Promise<Sample | null> {
  try {
    return await runSession(t, browserHandle.browser);
  } catch (error) {
    series.failures.push((error as Error).message);
    log(`${series.name} ${i + 1}/${sessions}: failed: ${(error as Error).message}`);
    return null;
  }
}

try {
  // Cold, with a baseline run after each session, so both see the same load on this machine.
  const t = await startTestServer('bench-start-to-sign-in-cold', { PORTHOLE_LOG_LEVEL: 'info', PORTHOLE_MAX_SESSIONS: '4', PORTHOLE_WARM_POOL: '0' });
  try {
    const demo = t.server.demoOidc;
    if (!demo) throw new Error('the test server runs no demo provider (PORTHOLE_DEMO_PROVIDER)');
    const { desktopWidth, desktopHeight } = t.server.config;
    for (let i = 0; i < sessions; i++) {
      const sample = await sampleSession(t, cold, i);
      if (sample?.isWarm) cold.note = 'some sessions took a warm desktop although PORTHOLE_WARM_POOL=0; they are left out';
      else if (sample) cold.samples.push(sample);
      if (sample) log(`cold ${i + 1}/${sessions}: ${sample.since.signInInCanvas.toFixed(0)} ms (framebuffer ${sample.since.painted.toFixed(0)} ms)`);
      await untilNoSandbox(t);
      try {
        const b = await runBaseline(signInUrl(demo.issuer, demo.clientId), desktopWidth, desktopHeight);
        baseline.push(b);
        log(`baseline ${i + 1}/${sessions}: ${b.signIn.toFixed(0)} ms`);
      } catch (error) {
        baselineFailures.push((error as Error).message);
        log(`baseline ${i + 1}/${sessions}: failed: ${(error as Error).message}`);
      }
    }
  } finally {
    await t.stop();
  }

  const w = await startTestServer('bench-start-to-sign-in-warm', { PORTHOLE_LOG_LEVEL: 'info', PORTHOLE_MAX_SESSIONS: '4', PORTHOLE_WARM_POOL: '1' });
  try {
    if (!(await untilWarmPoolReady(w, 60_000))) {
      warm.note =
        (await warmPoolReady(w)) === null
          ? 'not available: this server has no warm pool (no porthole_warm_pool_ready metric); the warm series was skipped'
          : 'not available: the warm pool stayed empty for 60 s; the warm series was skipped';
      log(`warm: ${warm.note}`);
    } else {
      let notWarm = 0;
      for (let i = 0; i < sessions; i++) {
        const sample = await sampleSession(w, warm, i);
        if (sample?.isWarm) warm.samples.push(sample);
        else if (sample) notWarm++;
        if (sample) log(`warm ${i + 1}/${sessions}: ${sample.since.signInInCanvas.toFixed(0)} ms${sample.isWarm ? '' : ' (took no warm desktop)'}`);
        // The next session must find the pool refilled, or it measures a cold start.
        if (i + 1 < sessions && !(await untilWarmPoolReady(w, 60_000))) log('warm: the pool did not refill within 60 s');
      }
      if (notWarm > 0) warm.note = `${notWarm} of ${sessions} sessions took no warm desktop (sandbox step without details.warm) and are left out`;
    }
  } finally {
    await w.stop();
  }
} finally {
  await browserHandle.close();
}

// ---- the table ----

const ms = (value: number) => (Number.isNaN(value) ? '    –' : value.toFixed(0).padStart(5));
const cell = (values: number[]) => {
  const seen = values.filter((v) => !Number.isNaN(v));
  return seen.length === 0 ? '      –       ' : `${ms(percentile(seen, 50))} / ${ms(percentile(seen, 95))}`;
};
const column = (series: Series, pick: (sample: Sample) => number) => (series.samples.length === 0 ? '      –       ' : cell(series.samples.map(pick)));
const width = 52;
const line = (label: string, coldCell: string, warmCell: string) => `${label.padEnd(width)}${coldCell.padStart(16)}   ${warmCell.padStart(16)}`;

console.log(
  withViewer
    ? `\nPOST /v1/sessions (provider demo) → the demo sign-in page drawn in the viewer's canvas, ms since the POST, p50 / p95`
    : `\nPOST /v1/sessions (provider demo) → the demo sign-in page in the sandbox's framebuffer (BENCH_VIEWER=0: no viewer), ms since the POST, p50 / p95`,
);
console.log(line('', `cold (${cold.samples.length})`, `warm (${warm.samples.length})`));
console.log(
  line(
    'total: sign-in page in the viewer canvas',
    column(cold, (s) => s.since.signInInCanvas),
    column(warm, (s) => s.since.signInInCanvas),
  ),
);
for (const milestone of Object.keys(milestoneLabels) as Milestone[]) {
  if (milestone === 'signInInCanvas') continue;
  console.log(
    line(
      `  ${milestoneLabels[milestone]}`,
      column(cold, (s) => s.since[milestone]),
      column(warm, (s) => s.since[milestone]),
    ),
  );
}
console.log('each start-up step on its own (details.ms)');
for (const step of stepNames)
  console.log(
    line(
      `  step ${step}`,
      column(cold, (s) => s.stepMs[step]),
      column(warm, (s) => s.stepMs[step]),
    ),
  );

// The two sightings of the page, in the viewer's canvas and in the sandbox's framebuffer: how far apart.
console.log(`the two sightings of the page: canvas − framebuffer, ms (agree: within ±${agreementMs} ms)`);
for (const series of [cold, warm]) {
  if (series.samples.length === 0) continue;
  const deltas = series.samples.map((s) => s.since.signInInCanvas - s.since.painted).filter((d) => !Number.isNaN(d));
  const signed = (d: number) => `${d >= 0 ? '+' : '−'}${Math.abs(d).toFixed(0)}`;
  const agreeing = deltas.filter((d) => Math.abs(d) <= agreementMs).length;
  const bounds = series.samples.filter((s) => s.isPaintedUpperBound).length;
  const range =
    deltas.length > 0
      ? `p50 ${signed(percentile(deltas, 50))}, from ${signed(Math.min(...deltas))} to ${signed(Math.max(...deltas))}`
      : 'no framebuffer sighting';
  console.log(
    `  ${series.name}: ${range}; ${agreeing}/${series.samples.length} agree${bounds > 0 ? ` (${bounds} framebuffer sightings were already there at connect: upper bounds)` : ''}`,
  );
}

console.log(`\nbaseline: Xvnc + openbox + Chromium by hand on the sign-in URL (${baseline.length} runs), ms since Xvnc's spawn, p50 / p95`);
console.log(line('  display up (X and VNC sockets)', cell(baseline.map((b) => b.displayUp)), ''));
console.log(line('  first framebuffer update', cell(baseline.map((b) => b.firstUpdate)), ''));
console.log(line('  sign-in page in the framebuffer', cell(baseline.map((b) => b.signIn)), ''));
const p50 = (values: number[]) => percentile(values, 50);
const ratio = (series: Series) =>
  series.samples.length === 0 || baseline.length === 0
    ? 'n/a'
    : `${(p50(series.samples.map((s) => s.since.signInInCanvas)) / p50(baseline.map((b) => b.signIn))).toFixed(2)}×`;
console.log(`ratio porthole total / baseline (p50): cold ${ratio(cold)}, warm ${ratio(warm)}`);
for (const series of [cold, warm]) {
  if (series.note) console.log(`note (${series.name}): ${series.note}`);
  if (series.failures.length > 0) console.log(`failed (${series.name}): ${series.failures.length} of ${sessions} sessions, first: ${series.failures[0]}`);
}
if (baselineFailures.length > 0) console.log(`failed (baseline): ${baselineFailures.length} runs, first: ${baselineFailures[0]}`);
