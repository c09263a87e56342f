import assert from 'node:assert/strict';
import { after, before, test, type TestContext } from 'node:test';
import type { SessionDiagnosis } from '../../src/protocol/diagnosis.js';
import type { SandboxId } from '../../src/protocol/ids.js';
import type { Session } from '../../src/protocol/session.js';
import { withFaultProxies, type Fault, type FaultProxiedDriver, type FaultProxy } from '../support/fault-proxy.js';
import { assertNothingLeft, diagnose, freshViewerUrl, hopOf, showDiagnosis, watchedSession, within } from '../support/faults.js';
import { elapse, untilDefined } from '../support/until.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { closeViewer, connectViewer, expectFramebufferUpdate, framebufferUpdateRequest, type ConnectedViewer } from '../support/ws.js';

// A fault-injection TCP proxy between the relay and the sandbox's VNC server (test/support/
// fault-proxy.ts, put in front of every sandbox through startServer's wrapDriver): added latency,
// a reset, a blackhole, a half-open connection, each under a connected viewer. Each case asserts
// the session's state, the viewer's close code and reason, the cause in the timeline, the
// diagnosis's failing hop and cause, and that nothing is left (the proxy included), and prints the
// time from the fault to the viewer's close and to a diagnosis that names the hop.
//
// The relay pings viewers every PORTHOLE_PING_INTERVAL_MS (2 s here); the sandbox side has no
// pings, so the relay checks a VNC connection silent for half the interval with a fresh RFB
// greeting that must answer within the other half (relay.ts #watchSandbox): a dead path is dropped
// within one interval of its last byte.

const pingIntervalMs = 2_000;
/** Timers and a loaded machine: what "within the ping interval" may overrun by. */
const slackMs = 500;
let t: TestServer;
let driver: FaultProxiedDriver;

before(async () => {
  t = await startTestServer(
    'faults-proxy',
    { PORTHOLE_PING_INTERVAL_MS: String(pingIntervalMs) },
    { wrapDriver: (inner) => (driver = withFaultProxies(inner)) },
  );
});
after(() => t?.stop());

interface Watched {
  session: Session;
  sandboxId: string;
  viewer: ConnectedViewer;
  proxy: FaultProxy;
}

async function watchedThroughProxy(): Promise<Watched> {
  const { session, sandboxId, viewer } = await watchedSession(t);
  const proxy = driver.proxyOf(sandboxId);
  assert.equal((await t.server.driver.inspect(sandboxId as SandboxId))?.vnc.kind, 'tcp', 'the relay reaches the VNC server through the proxy');
  assert.ok(proxy.connections >= 1, 'the viewer’s connection goes through the proxy');
  return { session, sandboxId, viewer, proxy };
}

/** Why the relay let the viewer go, as the session's timeline has it. */
async function lastDisconnectWhy(sessionId: string): Promise<string> {
  const { events } = await t.api.listEvents(sessionId);
  const left = events.filter((e) => e.type === 'viewer.disconnected').at(-1);
  assert.ok(left, 'a viewer.disconnected event');
  return String((left.details as { why?: unknown }).why);
}

/** Diagnoses until the vnc hop fails (the fault is still on), returning it and when. */
async function diagnosedAt(sessionId: string): Promise<{ d: SessionDiagnosis; at: number }> {
  const d = await untilDefined(
    'a diagnosis names the vnc hop',
    async () => {
      const answer = await diagnose(t, sessionId);
      return answer.firstFailure?.hop === 'vnc' ? answer : undefined;
    },
    20_000,
    { intervalMs: 100, canProbeFail: true },
  );
  return { d, at: Date.now() };
}

/** Heals the path, shows a new viewer gets the desktop, ends the session, checks nothing is left. */
async function healAndClean(watched: Watched): Promise<void> {
  const { session, sandboxId, proxy } = watched;
  assert.deepEqual(t.server.relay.stats(), [], 'the relay holds no connection');
  proxy.set({ kind: 'none' });
  // Every connection into the fault was let go: the relay's, its probes', the diagnosis's. (A
  // half-open one only sees its peer leave once it reads again, hence after the heal.)
  await untilDefined('the proxy holds no connection', async () => (proxy.connections === 0 ? true : undefined), 5_000, { intervalMs: 50, canProbeFail: true });
  const again = await connectViewer(freshViewerUrl(t, session.id));
  await expectFramebufferUpdate(again);
  await closeViewer(again);
  await t.api.endSession(session.id);
  await assertNothingLeft(t, sandboxId);
  assert.equal(proxy.connections, 0, 'the proxy holds no connection');
}

/**
 * A fault that leaves the sandbox running but cuts the path: the viewer is closed 4502
 * SANDBOX_UNREACHABLE within the ping interval, the session goes back to ready, the timeline says
 * why, and a diagnosis (fault still on) names the vnc hop.
 */
async function expectPathFault(tc: TestContext, fault: Fault, expected: { why: RegExp; vncCause: RegExp }): Promise<void> {
  const watched = await watchedThroughProxy();
  const { session, viewer, proxy } = watched;
  const faultAt = Date.now();
  proxy.set(fault);
  // The viewer asks for a frame, which needs an answer.
  viewer.ws.send(framebufferUpdateRequest(false, 0, 0, 4, 4));

  const closed = await within(viewer.closed, pingIntervalMs + 5_000, 'the viewer is closed');
  const closeMs = closed.at - faultAt;
  assert.deepEqual({ code: closed.code, reason: closed.reason }, { code: 4502, reason: 'SANDBOX_UNREACHABLE' });
  assert.ok(closeMs <= pingIntervalMs + slackMs, `detected within the ping interval (${pingIntervalMs} ms): ${closeMs} ms`);
  const ready = await t.waitForState(session.id, ['ready'], 5_000);
  const stateMs = Date.now() - faultAt;
  assert.equal(ready.sandboxId, watched.sandboxId, 'the sandbox runs on: only the path broke');
  const why = await lastDisconnectWhy(session.id);
  assert.match(why, expected.why);

  const { d, at } = await diagnosedAt(session.id);
  const diagnosedMs = at - faultAt;
  assert.equal(d.firstFailure?.code, 'SANDBOX_UNREACHABLE', showDiagnosis(d));
  assert.match(d.firstFailure?.cause ?? '', expected.vncCause, showDiagnosis(d));
  for (const hop of ['store', 'driver', 'agent'] as const) assert.equal(hopOf(d, hop).result, 'ok', showDiagnosis(d));
  assert.equal(hopOf(d, 'relay').result, 'skipped');
  tc.diagnostic(
    `${fault.kind}: viewer closed ${closed.code} ${closed.reason} after ${closeMs} ms (ping interval ${pingIntervalMs} ms); session ${ready.state} after ≤ ${stateMs} ms; ` +
      `timeline: "${why}"; diagnosis named vnc ("${d.firstFailure?.cause}") after ≤ ${diagnosedMs} ms (its walk took ${d.ms} ms)`,
  );
  await healAndClean(watched);
}

test('added latency (200 ms each way): the viewer keeps working and stays connected, the round trip is measured, the diagnosis passes', async (tc) => {
  const watched = await watchedThroughProxy();
  const { session, viewer, proxy } = watched;
  const direct = performance.now();
  await expectFramebufferUpdate(viewer);
  const directMs = Math.round(performance.now() - direct);
  const probesBefore = t.server.relay.stats()[0]?.sandboxProbes ?? 0;

  proxy.set({ kind: 'latency', ms: 200 });
  const roundTrips: number[] = [];
  for (let i = 0; i < 3; i++) {
    const started = performance.now();
    await expectFramebufferUpdate(viewer);
    roundTrips.push(Math.round(performance.now() - started));
  }
  for (const ms of roundTrips) assert.ok(ms >= 400, `a round trip through 2 × 200 ms takes at least 400 ms: ${ms} ms`);
  // Idle for three ping intervals: the relay's checks of the silent sandbox side answer, slowly, and pass.
  let isClosed = false;
  void viewer.closed.then(() => (isClosed = true));
  await elapse(3 * pingIntervalMs, 'the viewer stays connected while idle for three ping intervals');
  assert.equal(isClosed, false, 'the viewer stays connected');
  const probes = (t.server.relay.stats()[0]?.sandboxProbes ?? 0) - probesBefore;
  assert.ok(probes >= 2, `the relay checked the silent sandbox side: ${probes} probes`);
  await expectFramebufferUpdate(viewer);
  assert.equal((await t.api.getSession(session.id)).state, 'authenticating');

  const d = await diagnose(t, session.id);
  assert.equal(d.firstFailure, null, showDiagnosis(d));
  assert.ok(hopOf(d, 'vnc').ms >= 400, `the vnc hop's handshake crosses the proxy: ${hopOf(d, 'vnc').ms} ms`);
  tc.diagnostic(
    `latency 200 ms each way: FramebufferUpdate round trip ${roundTrips.join(', ')} ms (direct ${directMs} ms); viewer stayed connected over ${3 * pingIntervalMs} ms idle with ${probes} sandbox-side probes passing; ` +
      `diagnosis passes, vnc hop ${hopOf(d, 'vnc').ms} ms, relay hop ${hopOf(d, 'relay').ms} ms`,
  );
  proxy.set({ kind: 'none' });
  await closeViewer(viewer);
  await t.waitForState(session.id, ['ready'], 5_000);
  await healAndClean(watched);
});

test('reset (RST both ways): the viewer is closed 4502 SANDBOX_UNREACHABLE at once with ECONNRESET in the timeline; the diagnosis names the vnc hop', async (tc) => {
  await expectPathFault(
    tc,
    { kind: 'reset' },
    {
      why: /^sandbox socket error: ECONNRESET$/,
      vncCause: /^ECONNRESET on tcp:127\.0\.0\.1:\d+/,
    },
  );
});

test('blackhole (bytes in, nothing out, sockets open): detected within the ping interval, 4502 SANDBOX_UNREACHABLE; the diagnosis names the vnc hop (ETIMEDOUT)', async (tc) => {
  await expectPathFault(
    tc,
    { kind: 'blackhole' },
    {
      why: /^no byte from the VNC server for \d+ ms, and a new connection to it got no RFB banner within \d+ ms \(ETIMEDOUT\)$/,
      vncCause: /^ETIMEDOUT on tcp:127\.0\.0\.1:\d+: no answer before the RFB banner within \d+ ms$/,
    },
  );
});

test('half-open (the sandbox side vanished without FIN): detected within the ping interval, 4502 SANDBOX_UNREACHABLE; the diagnosis names the vnc hop (ETIMEDOUT)', async (tc) => {
  await expectPathFault(
    tc,
    { kind: 'half-open' },
    {
      why: /^no byte from the VNC server for \d+ ms, and a new connection to it got no RFB banner within \d+ ms \(ETIMEDOUT\)$/,
      vncCause: /^ETIMEDOUT on tcp:127\.0\.0\.1:\d+: no answer before the RFB banner within \d+ ms$/,
    },
  );
});
