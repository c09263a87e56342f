import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { SandboxId } from '../../src/protocol/ids.js';
import { agentHealth, assertNothingLeft, diagnose, freshViewerUrl, hopOf, showDiagnosis, watchedSession, within } from '../support/faults.js';
import {
  assertRunscInstalled,
  insideProcess,
  insideProcesses,
  isAliveInside,
  keepKillingInside,
  killInside,
  runscDaemons,
  sandboxHostProcesses,
} from '../support/gvisor.js';
import { createTestDataDir, removeTestDataDir, startTestServerIn, type RestartableTestServer } from '../support/restartable-server.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { untilDefined } from '../support/until.js';
import { closeViewer, connectViewer, expectFramebufferUpdate, nextClose, openViewerSocket, viewerSocketUrl } from '../support/ws.js';

// The fault tests of kill.test.ts and restart.test.ts on the gvisor driver: the same faults under a
// connected viewer, the same close codes, the same diagnosis, the same nothing-left-behind. What
// differs is how a fault is made: the desktop's processes are tasks of gVisor's Sentry, not host
// processes, so one of them is killed through `runsc kill --pid` (test/support/gvisor.ts), and the
// whole sandbox crashing is its host processes (Sentry, gofer, stubs) SIGKILLed at once. Timings
// are printed as test diagnostics. The reconciler runs at its default interval (5 s).

const reconcileIntervalMs = 5_000;
const gvisorEnv = { PORTHOLE_DRIVER: 'gvisor' };
let t: TestServer;

before(async () => {
  await assertRunscInstalled();
  t = await startTestServer('faults-gvisor', gvisorEnv);
});
after(() => t?.stop());

test('gvisor: Xvnc killed inside the sandbox: the viewer closes 4502 SANDBOX_UNREACHABLE, a diagnosis names the failing hop, the agent restarts Xvnc, a new viewer gets RFB, the session stays live', async (tc) => {
  const { session, sandboxId, viewer } = await watchedSession(t);
  const xvnc = await insideProcess(t.dataDir, sandboxId, 'Xvnc');

  const killedAt = Date.now();
  await killInside(t.dataDir, sandboxId, xvnc);
  const closed = await within(viewer.closed, 10_000, 'the viewer is closed');
  assert.deepEqual({ code: closed.code, reason: closed.reason }, { code: 4502, reason: 'SANDBOX_UNREACHABLE' });
  const closeMs = closed.at - killedAt;

  // One kill is often restarted (250 ms) before a diagnosis walks the agent and vnc hops, and then
  // every hop rightly answers (see test/e2e/diagnosis-view.test.ts). So Xvnc crash-loops, as a
  // broken build would, until a diagnosis names the hop; then the agent brings it back.
  const crashLoop = keepKillingInside(t.dataDir, sandboxId, 'Xvnc');
  let d: Awaited<ReturnType<typeof diagnose>>;
  try {
    d = await untilDefined(
      'a diagnosis names the failing hop',
      async () => {
        const found = await diagnose(t, session.id);
        return found.firstFailure ? found : undefined;
      },
      20_000,
      { intervalMs: 50 },
    );
  } finally {
    await crashLoop.stop();
  }
  const diagnosedMs = Date.now() - killedAt;
  // Xvnc's death as each hop sees it: the agent reports it down (SIGKILL), its socket refuses, or
  // (the crash loop kills each restart at any moment) the relay's own connection gets no banner.
  const failure = d.firstFailure!;
  assert.ok(failure.hop === 'agent' || failure.hop === 'vnc' || failure.hop === 'relay', showDiagnosis(d));
  if (failure.hop === 'relay') {
    assert.equal(failure.code, 'SANDBOX_UNREACHABLE', showDiagnosis(d));
  } else if (failure.hop === 'agent') {
    assert.equal(failure.code, 'AGENT_UNHEALTHY', showDiagnosis(d));
    assert.match(failure.cause, /vnc/, showDiagnosis(d));
  } else {
    assert.equal(failure.code, 'SANDBOX_UNREACHABLE', showDiagnosis(d));
    assert.match(failure.cause, /ECONNREFUSED|ENOENT|ECONNRESET/, showDiagnosis(d));
  }
  // The hops before it answer: the sandbox runs (on gVisor) and, for a vnc failure, its agent too.
  assert.equal(hopOf(d, 'driver').result, 'ok', showDiagnosis(d));
  assert.equal(hopOf(d, 'driver').details.driver, 'gvisor');

  // Until the restarted Xvnc listens, a viewer is closed 4502 and tries again, as the viewer page does.
  const again = await untilDefined('a new viewer gets RFB', () => connectViewer(freshViewerUrl(t, session.id)), 30_000, {
    intervalMs: 100,
    canProbeFail: true,
  });
  const rfbMs = Date.now() - killedAt;
  await expectFramebufferUpdate(again);
  const restarted = await insideProcess(t.dataDir, sandboxId, 'Xvnc');
  assert.notEqual(restarted.pid, xvnc.pid, 'a new Xvnc runs');
  const vnc = (await agentHealth(t, sandboxId)).processes.find((p) => p.name === 'vnc');
  assert.ok(vnc?.running && vnc.restarts >= 1, `agent health for vnc: ${JSON.stringify(vnc)}`);
  assert.equal(vnc.lastExit, 'signal SIGKILL');

  // openbox, xterm and Chromium lost their display with it; the agent brings the whole desktop back.
  await untilDefined('the agent reports the desktop healthy', async () => ((await agentHealth(t, sandboxId)).healthy ? true : undefined), 30_000, {
    intervalMs: 100,
    canProbeFail: true,
  });
  const healthyMs = Date.now() - killedAt;
  const current = await t.waitForState(session.id, ['authenticating'], 5_000); // the session stays live, watched by the new viewer
  assert.equal(current.sandboxId, sandboxId, 'in the same sandbox');
  tc.diagnostic(
    `Xvnc SIGKILL (runsc kill) → viewer closed 4502 SANDBOX_UNREACHABLE after ${closeMs} ms; with Xvnc crash-looping (${crashLoop.kills} more kills) a diagnosis named ${failure.hop}: "${failure.cause}" after ${diagnosedMs} ms; a new viewer got RFB after ${rfbMs} ms (vnc restarts=${vnc.restarts}); the agent reported the desktop healthy after ${healthyMs} ms; session ${current.state}`,
  );

  await closeViewer(again);
  await t.api.endSession(session.id);
  await assertNothingLeft(t, sandboxId);
});

test('gvisor: whole sandbox killed (Sentry, gofer and stubs SIGKILLed, as a crash): the relay asks the driver and ends the session (sandbox_exited) at once; the viewer gets 4410 SESSION_ENDED, as does a reconnecting one; nothing is left', async (tc) => {
  const { session, sandboxId, viewer } = await watchedSession(t);
  const inside = await insideProcesses(t.dataDir, sandboxId);
  assert.ok(
    ['node', 'Xvnc', 'chromium'].every((cmd) => inside.some((p) => p.cmd === cmd)),
    `the sandbox runs the agent and the desktop: ${inside.map((p) => p.cmd).join(', ')}`,
  );
  const host = await sandboxHostProcesses(t.dataDir, sandboxId);
  const daemons = await runscDaemons(t.dataDir, sandboxId);
  assert.deepEqual(
    daemons.map((p) => p.name),
    ['runsc-gofer', 'runsc-sandbox'],
    `the host sees gVisor's Sentry and gofer (and ${host.length - daemons.length} ptrace stubs)`,
  );

  const killedAt = Date.now();
  for (const pid of host) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // ESRCH: it went with one killed before it.
    }
  }
  const closed = await within(viewer.closed, 10_000, 'the viewer is closed');
  const closeMs = closed.at - killedAt;
  // Not 4502: the relay asks the driver before it answers, and the sandbox is gone, not just its VNC server.
  assert.deepEqual({ code: closed.code, reason: closed.reason }, { code: 4410, reason: 'SESSION_ENDED' });

  const ended = await t.waitForState(session.id, ['ended', 'failed'], reconcileIntervalMs + 5_000);
  const endedMs = Date.now() - killedAt;
  assert.equal(ended.state, 'ended');
  assert.equal(ended.reason, 'sandbox_exited');
  // The driver's account of the crash: gVisor's sandbox process is gone.
  assert.match(ended.detail ?? '', new RegExp(`^The sandbox ${sandboxId} exited.*gVisor's sandbox process \\(pid \\d+\\) is gone`));
  // Ended by the relay, not by the reconciler's next tick.
  assert.ok(endedMs <= 3_000, `ended at once: ${endedMs} ms`);

  const d = await diagnose(t, session.id);
  const diagnosedMs = Date.now() - killedAt;
  assert.equal(d.firstFailure, null, showDiagnosis(d));
  assert.equal(hopOf(d, 'store').cause.startsWith('ended (sandbox_exited)'), true, showDiagnosis(d));
  assert.match(String(hopOf(d, 'store').details.detail), /gVisor's sandbox process/);
  assert.equal(hopOf(d, 'driver').cause, 'session is ended (sandbox_exited)');

  const late = await openViewerSocket(freshViewerUrl(t, session.id));
  assert.ok('ws' in late, 'refused' in late ? JSON.stringify(late.refused) : '');
  assert.deepEqual(await nextClose(late.ws), { code: 4410, reason: 'SESSION_ENDED' }, 'a viewer reconnecting learns the session ended');
  await assertNothingLeft(t, sandboxId);
  const cleanMs = Date.now() - killedAt;
  tc.diagnostic(
    `${host.length} host processes (${daemons.map((p) => p.name).join(', ')} and ${host.length - daemons.length} ptrace stubs) SIGKILL → viewer closed ${closed.code} ${closed.reason} after ${closeMs} ms; session ended/sandbox_exited after ≤ ${endedMs} ms ("${ended.detail}"); diagnosis (store: ended, sandbox_exited) after ≤ ${diagnosedMs} ms; a reconnecting viewer gets 4410 SESSION_ENDED; runsc state, sockets and directory gone after ≤ ${cleanMs} ms`,
  );
});

// The server restarts under a connected viewer (restart.test.ts for local): the viewer is told 4503
// SERVER_SHUTTING_DOWN; the gVisor sandbox runs on (a daemon of its own, under porthole's runsc
// root); the next server on the same data directory adopts it and a new viewer gets RFB.
test('gvisor: server restart with a viewer connected: 4503, the sandbox runs on, then the session is adopted and a viewer reconnects', async (tc) => {
  const name = 'faults-gvisor-restart';
  const dataDir = await createTestDataDir();
  let first: RestartableTestServer | undefined;
  let second: RestartableTestServer | undefined;
  try {
    first = await startTestServerIn(dataDir, name, gvisorEnv);
    const session = await first.readySession();
    const sandboxId = session.sandboxId!;
    // The agent is the container's init: pid 1 inside (a CLI it starts may be a `node` too).
    const agent = (await insideProcesses(dataDir, sandboxId)).find((p) => p.pid === 1);
    assert.equal(agent?.cmd, 'node', 'the agent is the sandbox’s pid 1');
    const xvnc = await insideProcess(dataDir, sandboxId, 'Xvnc');
    const sentryAndGofer = await runscDaemons(dataDir, sandboxId);
    const viewer = await connectViewer(freshViewerUrl(first, session.id));
    await first.waitForState(session.id, ['authenticating'], 5_000);

    const closingAt = Date.now();
    const closing = first;
    first = undefined;
    await closing.close();
    const closed = await within(viewer.closed, 5_000, 'the viewer is closed');
    assert.deepEqual({ code: closed.code, reason: closed.reason }, { code: 4503, reason: 'SERVER_SHUTTING_DOWN' });
    const closeMs = closed.at - closingAt;
    assert.ok((await isAliveInside(dataDir, sandboxId, agent)) && (await isAliveInside(dataDir, sandboxId, xvnc)), 'the sandbox runs on while no server does');

    const restartAt = Date.now();
    second = await startTestServerIn(dataDir, name, gvisorEnv);
    const startMs = Date.now() - restartAt;
    const adopted = await second.api.getSession(session.id);
    assert.equal(adopted.state, 'ready', 'adopted at start-up: nobody is connected to the new server yet');
    assert.equal(adopted.sandboxId, sandboxId, 'the same sandbox');
    const back = (await second.api.listEvents(session.id)).events.filter((e) => e.type.startsWith('session.')).at(-1);
    assert.deepEqual([back?.type, back?.from, back?.to], ['session.ready', 'authenticating', 'ready'], 'the timeline says it is ready again');
    assert.ok(back?.reason === 'no_viewer' || back?.reason === 'viewer_left', `reason ${back?.reason}`);
    assert.ok((await isAliveInside(dataDir, sandboxId, agent)) && (await isAliveInside(dataDir, sandboxId, xvnc)), 'the agent and Xvnc were not restarted');
    assert.deepEqual(await runscDaemons(dataDir, sandboxId), sentryAndGofer, 'the same gVisor sandbox (Sentry and gofer) runs');
    const info = await second.server.driver.inspect(sandboxId as SandboxId);
    assert.equal(info?.status, 'running', 'the new server’s driver inspects it as running');
    const health = await agentHealth(second, sandboxId);
    assert.ok(health.healthy, 'the adopted sandbox is healthy');
    assert.equal(health.processes.find((p) => p.name === 'vnc')?.restarts, 0, 'Xvnc never restarted');

    const fresh = await second.api.createTicket(session.id);
    const again = await connectViewer(viewerSocketUrl(second.server.url, session.id, fresh.ticket));
    const rfbMs = Date.now() - restartAt;
    await expectFramebufferUpdate(again);
    await second.waitForState(session.id, ['authenticating'], 5_000);
    const d = await diagnose(second, session.id);
    assert.equal(d.firstFailure, null, showDiagnosis(d));
    tc.diagnostic(
      `close() → viewer closed 4503 SERVER_SHUTTING_DOWN after ${closeMs} ms; new server up in ${startMs} ms with the session adopted (ready, same gVisor sandbox, agent pid ${agent.pid} inside unchanged); a new viewer got RFB ${rfbMs} ms after the restart began; a diagnosis walks every hop ok`,
    );

    await closeViewer(again);
    await second.api.endSession(session.id);
    await assertNothingLeft(second, sandboxId);
  } finally {
    await first?.close();
    // Whatever happened, a server on the data directory ends the sessions and destroys the sandboxes.
    second ??= await startTestServerIn(dataDir, name, gvisorEnv).catch(() => undefined);
    if (second) await second.stop();
    else await removeTestDataDir(dataDir);
  }
});
