// The gvisor driver against the local one, in one process, on the same machine at the same time:
// two test servers (test/support/server.ts), one per driver, each with half of the test sandbox uids,
// measured alternately so that drift on the machine falls on both alike. Three metrics, each
// printed for both drivers with the ratio gvisor / local:
//  (a) start: POST /v1/sessions (provider demo) until the demo sign-in page is drawn in the
//      sandbox's framebuffer (read from its VNC socket, as start-to-sign-in.ts with BENCH_VIEWER=0),
//      and until the desktop is up (the session's vnc step); BENCH_SESSIONS sessions per driver
//      (default 6), one at a time, cold (no warm pool), p50/p95. A session whose CLI has not opened
//      the page BENCH_BROWSER_OPEN_MS (default 30 s) after it started has no page time, and says why;
//  (b) memory: BENCH_LIVE sessions per driver live at once (default 3), each with its sign-in page
//      open (or said not to have it, after BENCH_BROWSER_OPEN_MS), the summed PSS of each sandbox's
//      host processes (bench/sandbox-memory.ts: for gvisor the Sentry, the gofer and the ptrace
//      stubs, which hold all of the person's processes);
//  (c) relay: one live session per driver, BENCH_FRAMES full raw frames (default 60) and
//      BENCH_ROUNDTRIPS 1×1 round trips (default 100) through porthole's relay, and the same
//      directly on the sandbox's VNC socket, in BENCH_ROUNDS interleaved rounds (default 3), as relay.ts.
// The gvisor server's platform is PORTHOLE_GVISOR_PLATFORM (default ptrace); both servers' task
// limit PORTHOLE_SANDBOX_PIDS (default 512, the server's). The memory part also reads each
// sandbox's cgroup: its memory (page cache and tmpfs included) and its tasks, processes and threads.
// Progress goes to stderr, the table to stdout.
//   node --enable-source-maps dist/bench/drivers.js      (BENCH_SESSIONS=2 BENCH_LIVE=2 for a quick look)
import { execFile } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { detectCgroups } from '../src/drivers/cgroups/cgroups.js';
import { pinSocket } from '../src/drivers/pinned-socket.js';
import type { RfbTransport } from '../src/drivers/rfb-client.js';
import type { SandboxId, SessionId } from '../src/protocol/ids.js';
import { startTestServer, testSandboxUids, type TestServer } from '../test/support/server.js';
import { wallClock } from './framebuffer-colour.js';
import { measureRfbPath, openUnix, openWs, percentile } from './rfb-client.js';
import { MiB, sandboxPss, settle } from './sandbox-memory.js';
import { watchSessionFramebuffer } from './session-framebuffer.js';

const sessions = Number(process.env.BENCH_SESSIONS ?? 6);
const liveCount = Number(process.env.BENCH_LIVE ?? 3);
const frames = Number(process.env.BENCH_FRAMES ?? 60);
const pings = Number(process.env.BENCH_ROUNDTRIPS ?? 100);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const gvisorPlatform = process.env.PORTHOLE_GVISOR_PLATFORM ?? 'ptrace';
/** The servers' task limit: the server's default (512; the gvisor driver allows its cgroup 8× that in host tasks) unless set. */
const sandboxPids = Number(process.env.PORTHOLE_SANDBOX_PIDS ?? 512);
/** How long after its start a session's CLI may take to open the sign-in page before the page is given up on. */
const browserOpenMs = Number(process.env.BENCH_BROWSER_OPEN_MS ?? 30_000);
/** One session's start, from the POST to the page; a miss beyond this is a failure, not a sample. */
const sessionTimeoutMs = 90_000;

const drivers = ['local', 'gvisor'] as const;
type DriverName = (typeof drivers)[number];
const log = (line: string) => process.stderr.write(`${line}\n`);

// A missing prerequisite fails and names it, before anything starts.
const runscVersion = await promisify(execFile)('runsc', ['--version'], { env: { PATH: '/usr/bin:/usr/sbin:/bin:/sbin' } }).catch(() => null);
if (!runscVersion) throw new Error('runsc is missing: apt-get install -y runsc (scripts/setup.sh --test installs it)');
if (process.getuid?.() !== 0) throw new Error('the gvisor driver needs root: run this bench as root');

/** The two servers share the test uid range, half each: a gVisor sandbox's uid is not a host process's, so neither would see the other's in use. */
function uidHalves(range: string): Record<DriverName, string> {
  const [first, last] = range.split('-').map(Number) as [number, number];
  const middle = first + Math.floor((last - first + 1) / 2) - 1;
  return { local: `${first}-${middle}`, gvisor: `${middle + 1}-${last}` };
}

interface StartSample {
  /** POST → the sign-in page in the framebuffer; NaN when it never showed (see failure). */
  totalMs: number;
  /** POST → the desktop up (the session's vnc step done): measured even when the page never shows. */
  desktopMs: number;
  /** The session's sandbox step (the driver's create) on its own, from its step.succeeded. */
  sandboxStepMs: number;
  /** Why the page never showed; null when it did. */
  failure: string | null;
}

/** Between sessions: the last sandbox is gone, so its teardown does not load the next start. */
async function untilNoSandbox(t: TestServer): Promise<void> {
  const deadline = Date.now() + 30_000;
  while ((await t.server.driver.list()).length > 0 && Date.now() < deadline) await sleep(100);
}

/**
 * Rejects, naming why, once the page cannot come any more: the session failed or ended (a sandbox
 * that died), or its CLI has not opened the browser `browserOpenMs` after the login step (the
 * local driver's opens it within about a second). Polls the store, not the API, as
 * watchSessionFramebuffer does: no HTTP load on the server under measurement.
 */
async function rejectWhenNoPage(t: TestServer, sessionId: string, signal: AbortSignal): Promise<never> {
  for (;;) {
    await sleep(250, undefined, { signal });
    const session = await t.server.store.getSession(sessionId as SessionId);
    if (session && (session.state === 'failed' || session.state === 'ended')) throw new Error(`session ${session.state}: ${session.detail}`);
    const events = await t.server.store.listEvents(sessionId as SessionId);
    const loginDone = events.find((e) => e.type === 'step.succeeded' && e.details.step === 'login');
    if (loginDone && !events.some((e) => e.type === 'login.browser_opened') && Date.now() - Date.parse(loginDone.at) > browserOpenMs) {
      const said = events.filter((e) => e.type.startsWith('login.')).map((e) => e.type);
      throw new Error(`the CLI did not open the sign-in page within ${browserOpenMs / 1000} s of its start (login events: ${said.join(', ') || 'none'})`);
    }
  }
}

async function timeStart(t: TestServer): Promise<StartSample> {
  const stop = new AbortController();
  let sessionId: string | null = null;
  const postedAt = wallClock();
  try {
    const created = await t.api.createSession({ provider: 'demo' });
    sessionId = created.id;
    const signal = AbortSignal.any([stop.signal, AbortSignal.timeout(sessionTimeoutMs)]);
    let totalMs = Number.NaN;
    let failure: string | null = null;
    try {
      const sighting = await Promise.race([watchSessionFramebuffer(t, created.id, sessionTimeoutMs, signal), rejectWhenNoPage(t, created.id, signal)]);
      totalMs = sighting.foundAt - postedAt;
    } catch (error) {
      failure = (error as Error).message;
    }
    const events = await t.server.store.listEvents(created.id as SessionId);
    const step = (name: string) => events.find((e) => e.type === 'step.succeeded' && e.details.step === name);
    const vncDone = step('vnc');
    return {
      totalMs,
      desktopMs: vncDone ? Date.parse(vncDone.at) - postedAt : Number.NaN,
      sandboxStepMs: Number(step('sandbox')?.details.ms ?? Number.NaN),
      failure: failure === null ? null : `session ${created.id}: ${failure}; log: ${t.logFile}`,
    };
  } finally {
    stop.abort();
    if (sessionId) await t.server.sessions.end(sessionId as SessionId, 'user').catch(() => {});
    await untilNoSandbox(t);
  }
}

/**
 * `count` live sessions of one server at once, each as far as it gets in `browserOpenMs` after it
 * is ready: its sign-in page open in its Chromium (login.browser_opened), or not (counted, and said).
 */
async function liveSessions(t: TestServer, count: number): Promise<{ id: string; sandboxId: string; hasPage: boolean }[]> {
  const live: { id: string; sandboxId: string; hasPage: boolean }[] = [];
  for (let i = 0; i < count; i++) {
    const session = await t.readySession({ provider: 'demo' });
    const deadline = Date.now() + browserOpenMs;
    let hasPage = false;
    while (!hasPage && Date.now() < deadline) {
      hasPage = (await t.server.store.countEvents(session.id as SessionId, ['login.browser_opened'])) > 0;
      if (!hasPage) await sleep(250);
    }
    live.push({ id: session.id, sandboxId: session.sandboxId!, hasPage });
  }
  return live;
}

const uids = uidHalves(testSandboxUids);
const servers = {} as Record<DriverName, TestServer>;
const starts: Record<DriverName, StartSample[]> = { local: [], gvisor: [] };
const pss: Record<DriverName, { bytes: number; processes: number; cgroupBytes: number; tasks: number; hasPage: boolean }[]> = { local: [], gvisor: [] };
const cgroups = detectCgroups();
const relay: Record<DriverName, Record<'porthole' | 'direct', { mbps: number[]; rtt: number[] }>> = {
  local: { porthole: { mbps: [], rtt: [] }, direct: { mbps: [], rtt: [] } },
  gvisor: { porthole: { mbps: [], rtt: [] }, direct: { mbps: [], rtt: [] } },
};

/** Ends every session and sandbox of both servers and removes their data directories; once, whoever asks first. */
let stopping: Promise<void> | null = null;
const stopServers = () => {
  stopping ??= (async () => {
    for (const driver of drivers) await servers[driver]?.stop();
  })();
  return stopping;
};
// Interrupted (Ctrl-C, kill), the sandboxes still go: they are not children of this process.
for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.once(signal, () => void stopServers().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143)));

try {
  for (const driver of drivers) {
    servers[driver] = await startTestServer(`bench-drivers-${driver}`, {
      PORTHOLE_DRIVER: driver,
      PORTHOLE_GVISOR_PLATFORM: gvisorPlatform,
      PORTHOLE_SANDBOX_UIDS: uids[driver],
      PORTHOLE_MAX_SESSIONS: String(liveCount + 1),
      PORTHOLE_SANDBOX_PIDS: String(sandboxPids),
      PORTHOLE_LOG_LEVEL: 'info',
    });
  }

  // (a) start to sign-in, alternating the drivers and which goes first in each round. A session
  // whose page cannot come any more (rejectWhenNoPage) still gives its desktop-up time.
  for (let i = 0; i < sessions; i++) {
    for (const driver of i % 2 === 0 ? drivers : [...drivers].reverse()) {
      const sample = await timeStart(servers[driver]);
      starts[driver].push(sample);
      log(
        `start ${driver} ${i + 1}/${sessions}: desktop up ${sample.desktopMs.toFixed(0)} ms (sandbox step ${sample.sandboxStepMs.toFixed(0)} ms), ` +
          (sample.failure ? `no sign-in page: ${sample.failure}` : `sign-in page ${sample.totalMs.toFixed(0)} ms`),
      );
    }
  }

  // (b) memory: liveCount sessions of one driver at a time, so that each set has the machine to itself.
  for (const driver of drivers) {
    const t = servers[driver];
    let live: { id: string; sandboxId: string; hasPage: boolean }[] = [];
    try {
      live = await liveSessions(t, liveCount);
      await settle();
      for (const s of live) {
        const usage = await (await cgroups).open(s.sandboxId).then((cgroup) => cgroup?.usage() ?? null);
        pss[driver].push({
          ...(await sandboxPss(t, s.sandboxId)),
          cgroupBytes: usage?.memoryBytes ?? Number.NaN,
          tasks: usage?.pids ?? Number.NaN,
          hasPage: s.hasPage,
        });
      }
      log(
        `memory ${driver}: ${pss[driver]
          .map(
            (p) =>
              `PSS ${(p.bytes / MiB).toFixed(0)} MiB in ${p.processes} processes, cgroup ${(p.cgroupBytes / MiB).toFixed(0)} MiB, ${p.tasks} tasks${p.hasPage ? '' : ', no sign-in page'}`,
          )
          .join('; ')}`,
      );
    } finally {
      for (const s of live) await t.server.sessions.end(s.id as SessionId, 'user').catch(() => {});
      await untilNoSandbox(t);
    }
  }

  // (c) relay: one live session per driver, the same requests on both paths of both, interleaved.
  const paths = {} as Record<DriverName, Record<'porthole' | 'direct', () => Promise<RfbTransport>>>;
  for (const driver of drivers) {
    const t = servers[driver];
    const session = await t.readySession();
    const handle = await t.server.driver.inspect(session.sandboxId as SandboxId);
    if (handle?.vnc.kind !== 'unix') throw new Error(`${driver}: expected a unix VNC endpoint`);
    const vncPath = handle.vnc.path;
    // The server connects only through its pin of the sandbox's socket (src/drivers/pinned-socket.ts): so does the direct path.
    if (handle.vnc.pin) await pinSocket(handle.vnc.pin, vncPath).catch(() => {});
    paths[driver] = {
      porthole: async () =>
        openWs(`${t.server.url.replace('http', 'ws')}/v1/sessions/${session.id}/vnc?ticket=${(await t.api.createTicket(session.id)).ticket}`),
      direct: () => openUnix(vncPath),
    };
  }
  for (let round = 0; round < rounds; round++) {
    for (const driver of round % 2 === 0 ? drivers : [...drivers].reverse()) {
      for (const path of ['porthole', 'direct'] as const) {
        const r = await measureRfbPath(paths[driver][path], { frames, pings });
        relay[driver][path].mbps.push(r.mbps);
        relay[driver][path].rtt.push(...r.rttMs);
      }
    }
    log(`relay round ${round + 1}/${rounds} done`);
  }
} finally {
  await stopServers();
}

// ---- the table ----

const p50 = (values: number[]) => percentile(values, 50);
const p95 = (values: number[]) => percentile(values, 95);
const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
/** A count (how many sessions showed the page) is said for each driver, without a ratio. */
type Row = { label: string; local: number; gvisor: number; digits: number; isCount: boolean };
const rows: Row[] = [];
const add = (label: string, pick: (driver: DriverName) => number, digits = 0) =>
  rows.push({ label, local: pick('local'), gvisor: pick('gvisor'), digits, isCount: false });
const addCount = (label: string, pick: (driver: DriverName) => number) =>
  rows.push({ label, local: pick('local'), gvisor: pick('gvisor'), digits: 0, isCount: true });

const pageTimes = (d: DriverName) => starts[d].filter((s) => s.failure === null).map((s) => s.totalMs);
add('start → desktop up (vnc step done), p50 (ms)', (d) => p50(starts[d].map((s) => s.desktopMs)));
add('  of which the sandbox step (driver create), p50 (ms)', (d) => p50(starts[d].map((s) => s.sandboxStepMs)));
add('start → sign-in page in the framebuffer, p50 (ms)', (d) => p50(pageTimes(d)));
add('start → sign-in page in the framebuffer, p95 (ms)', (d) => p95(pageTimes(d)));
addCount('  sessions whose sign-in page showed', (d) => pageTimes(d).length);
add(`PSS per live session, mean of ${liveCount} (MiB)`, (d) => mean(pss[d].map((p) => p.bytes)) / MiB);
add('  host processes per session', (d) => mean(pss[d].map((p) => p.processes)), 1);
addCount('  live sessions with the sign-in page open', (d) => pss[d].filter((p) => p.hasPage).length);
add(`cgroup memory per live session, mean of ${liveCount} (MiB)`, (d) => mean(pss[d].map((p) => p.cgroupBytes)) / MiB);
add('cgroup tasks (processes and threads) per live session', (d) => mean(pss[d].map((p) => p.tasks)));
add('relay throughput, median (MiB/s)', (d) => p50(relay[d].porthole.mbps));
add('relay round trip 1×1, p50 (ms)', (d) => p50(relay[d].porthole.rtt), 3);
add('direct on the VNC socket, throughput (MiB/s)', (d) => p50(relay[d].direct.mbps));
add('direct on the VNC socket, round trip p50 (ms)', (d) => p50(relay[d].direct.rtt), 3);

const fmt = (value: number, digits: number) => (Number.isNaN(value) ? '–' : value.toFixed(digits));
const width = Math.max(...rows.map((r) => r.label.length)) + 2;
console.log(
  `\ndrivers: local vs gvisor (platform ${gvisorPlatform}), one process, alternating; ${sessions} starts each, ${liveCount} live sessions each for memory ` +
    `(PORTHOLE_SANDBOX_PIDS=${sandboxPids}), ` +
    `relay ${rounds} rounds of ${frames} raw frames and ${pings} round trips`,
);
console.log(`${'metric'.padEnd(width)}${'local'.padStart(10)}${'gvisor'.padStart(10)}${'gvisor/local'.padStart(14)}`);
for (const r of rows) {
  const ratio = !r.isCount && r.local > 0 && !Number.isNaN(r.gvisor) ? `${(r.gvisor / r.local).toFixed(2)}×` : '–';
  console.log(`${r.label.padEnd(width)}${fmt(r.local, r.digits).padStart(10)}${fmt(r.gvisor, r.digits).padStart(10)}${ratio.padStart(14)}`);
}
for (const driver of drivers) {
  const failures = starts[driver].filter((s) => s.failure !== null);
  if (failures.length > 0) console.log(`no sign-in page (${driver}): ${failures.length} of ${starts[driver].length} sessions, first: ${failures[0]!.failure}`);
  const pageless = pss[driver].filter((p) => !p.hasPage).length;
  if (pageless > 0)
    console.log(`memory (${driver}): ${pageless} of ${pss[driver].length} live sessions had no sign-in page open: their PSS is a desktop's without it`);
}
