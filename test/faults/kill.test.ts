import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { agentHealth, assertNothingLeft, diagnose, freshViewerUrl, hopOf, showDiagnosis, watchedSession, within } from '../support/faults.js';
import { isAlive, killProcess, sandboxProcess, sandboxProcesses } from '../support/sandbox-processes.js';
import { untilDefined } from '../support/until.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { closeViewer, connectViewer, expectFramebufferUpdate, nextClose, openViewerSocket } from '../support/ws.js';

// SIGKILL parts of a running sandbox under a connected viewer (real Xvnc, agent, Chromium) and
// check what the viewer is told, what the session becomes, how long that takes (printed as a test
// diagnostic), what a diagnosis says, and that nothing is left behind. The reconciler runs at its
// default interval (5 s), as in production.

const reconcileIntervalMs = 5_000;
let t: TestServer;

before(async () => {
  t = await startTestServer('faults-kill');
});
after(() => t?.stop());

test('Xvnc killed: the viewer closes 4502 SANDBOX_UNREACHABLE, the agent restarts Xvnc, a new viewer gets RFB, the session stays live', async (tc) => {
  const { session, sandboxId, viewer } = await watchedSession(t);
  const xvnc = await sandboxProcess(sandboxId, 'Xvnc');

  const killedAt = Date.now();
  await killProcess(xvnc);
  const closed = await within(viewer.closed, 10_000, 'the viewer is closed');
  assert.deepEqual({ code: closed.code, reason: closed.reason }, { code: 4502, reason: 'SANDBOX_UNREACHABLE' });
  const closeMs = closed.at - killedAt;

  // Until the restarted Xvnc listens, a viewer is closed 4502 and tries again, as the viewer page does.
  const again = await untilDefined('a new viewer gets RFB', () => connectViewer(freshViewerUrl(t, session.id)), 30_000, {
    intervalMs: 100,
    canProbeFail: true,
  });
  const rfbMs = Date.now() - killedAt;
  await expectFramebufferUpdate(again);
  const restarted = await sandboxProcess(sandboxId, 'Xvnc');
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
    `Xvnc SIGKILL → viewer closed 4502 SANDBOX_UNREACHABLE after ${closeMs} ms; a new viewer got RFB after ${rfbMs} ms (vnc restarts=${vnc.restarts}); the agent reported the desktop healthy after ${healthyMs} ms; session ${current.state}`,
  );

  await closeViewer(again);
  await t.api.endSession(session.id);
  await assertNothingLeft(t, sandboxId);
});

test('Chromium killed: the viewer stays connected, the agent restarts the browser and the old one’s helpers go', async (tc) => {
  const { session, sandboxId, viewer } = await watchedSession(t);
  // One main browser process (a helper may carry the marker for the instant between fork and exec).
  const browser = await untilDefined('one main browser process', () => sandboxProcess(sandboxId, 'chromium'), 5_000, { intervalMs: 50, canProbeFail: true });
  // Its zygotes, renderers and GPU process (they carry no marker: Chromium rewrites their environment).
  const helpers = await untilDefined(
    'the browser has started its helpers',
    async () => {
      const found = (await sandboxProcesses(sandboxId)).filter((p) => p.comm === 'chromium' && p.pid !== browser.pid);
      return found.length >= 2 ? found : undefined;
    },
    15_000,
    { intervalMs: 50, canProbeFail: true },
  );
  let isClosed = false;
  void viewer.closed.then(() => (isClosed = true));

  const killedAt = Date.now();
  await killProcess(browser);
  const restarted = await untilDefined(
    'the agent reports the browser running again',
    async () => {
      const state = (await agentHealth(t, sandboxId)).processes.find((p) => p.name === 'browser');
      return state?.running && state.restarts >= 1 && state.pid !== browser.pid ? state : undefined;
    },
    30_000,
    { intervalMs: 50, canProbeFail: true },
  );
  const restartMs = Date.now() - killedAt;
  assert.equal(restarted.lastExit, 'signal SIGKILL');
  await untilDefined(
    'the killed browser’s helpers are gone',
    async () => ((await Promise.all(helpers.map(isAlive))).some(Boolean) ? undefined : true),
    10_000,
    { intervalMs: 50, canProbeFail: true },
  );
  const helpersGoneMs = Date.now() - killedAt;
  // Exactly one main browser process again (a helper may carry the marker for the instant between fork and exec).
  await untilDefined('one main browser process', () => sandboxProcess(sandboxId, 'chromium'), 5_000, { intervalMs: 50, canProbeFail: true });

  assert.equal(isClosed, false, 'the viewer is still connected');
  await expectFramebufferUpdate(viewer);
  const current = await t.api.getSession(session.id);
  assert.equal(current.state, 'authenticating');
  tc.diagnostic(
    `Chromium SIGKILL → agent restarted the browser after ${restartMs} ms (restarts=${restarted.restarts}); the old helpers were gone after ${helpersGoneMs} ms; the viewer stayed connected`,
  );

  await closeViewer(viewer);
  await t.api.endSession(session.id);
  await assertNothingLeft(t, sandboxId);
});

test('whole sandbox killed: the relay sees its VNC connection drop, asks the driver, and ends the session (sandbox_exited) at once; the viewer gets 4410 SESSION_ENDED, as does a reconnecting one', async (tc) => {
  const { session, sandboxId, viewer } = await watchedSession(t);
  const all = await sandboxProcesses(sandboxId);
  assert.ok(
    ['bwrap', 'node', 'Xvnc', 'chromium'].every((comm) => all.some((p) => p.comm === comm)),
    `the sandbox runs bwrap, the agent and the desktop: ${all.map((p) => p.comm).join(', ')}`,
  );

  const killedAt = Date.now();
  for (const p of all) {
    try {
      process.kill(p.pid, 'SIGKILL');
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
  assert.match(ended.detail ?? '', new RegExp(`^The sandbox ${sandboxId} exited`));
  // Ended by the relay, not by the reconciler's next tick.
  assert.ok(endedMs <= 3_000, `ended at once: ${endedMs} ms`);

  const d = await diagnose(t, session.id);
  const diagnosedMs = Date.now() - killedAt;
  assert.equal(d.firstFailure, null, showDiagnosis(d));
  assert.equal(hopOf(d, 'store').cause.startsWith('ended (sandbox_exited)'), true, showDiagnosis(d));
  assert.match(String(hopOf(d, 'store').details.detail), /exited/);
  assert.equal(hopOf(d, 'driver').cause, 'session is ended (sandbox_exited)');

  const late = await openViewerSocket(freshViewerUrl(t, session.id));
  assert.ok('ws' in late, 'refused' in late ? JSON.stringify(late.refused) : '');
  assert.deepEqual(await nextClose(late.ws), { code: 4410, reason: 'SESSION_ENDED' }, 'a viewer reconnecting learns the session ended');
  await assertNothingLeft(t, sandboxId);
  const cleanMs = Date.now() - killedAt;
  tc.diagnostic(
    `all ${all.length} sandbox processes SIGKILL → viewer closed ${closed.code} ${closed.reason} after ${closeMs} ms; session ended/sandbox_exited after ≤ ${endedMs} ms ("${ended.detail}"); diagnosis (store: ended, sandbox_exited) after ≤ ${diagnosedMs} ms; a reconnecting viewer gets 4410 SESSION_ENDED; sandbox destroyed, nothing left, after ≤ ${cleanMs} ms`,
  );
});

test('agent killed: the sandbox counts as exited at once (a diagnosis names the agent’s exit), the reconciler ends the session (sandbox_exited), the viewer gets 4410 SESSION_ENDED, the orphaned desktop goes with the sandbox', async (tc) => {
  const { session, sandboxId, viewer } = await watchedSession(t);
  const agent = await sandboxProcess(sandboxId, 'node');
  const xvnc = await sandboxProcess(sandboxId, 'Xvnc');

  const killedAt = Date.now();
  await killProcess(agent);
  // bwrap's init reaps on: the desktop outlives its agent, unsupervised, until the sandbox is destroyed.
  assert.equal(await isAlive(xvnc), true, 'Xvnc outlives the agent for now');
  // Before the reconciler's next tick, the driver already reports the sandbox exited and how.
  const early = await untilDefined(
    'a diagnosis names the agent’s exit (or the session ended first)',
    async () => {
      const d = await diagnose(t, session.id);
      return d.state === 'ended' || d.firstFailure?.cause.includes('signal SIGKILL') ? d : undefined;
    },
    reconcileIntervalMs + 5_000,
    { intervalMs: 50, canProbeFail: true },
  );
  const diagnosedMs = Date.now() - killedAt;
  if (early.state !== 'ended') {
    assert.deepEqual(
      early.firstFailure,
      { hop: 'driver', code: 'SANDBOX_UNREACHABLE', cause: 'sandbox process exited (agent exited: signal SIGKILL)' },
      showDiagnosis(early),
    );
    assert.equal(hopOf(early, 'driver').details.status, 'exited');
  }

  const closed = await within(viewer.closed, reconcileIntervalMs + 5_000, 'the viewer is closed');
  const closeMs = closed.at - killedAt;
  assert.deepEqual({ code: closed.code, reason: closed.reason }, { code: 4410, reason: 'SESSION_ENDED' });
  const ended = await t.waitForState(session.id, ['ended', 'failed'], reconcileIntervalMs + 5_000);
  const endedMs = Date.now() - killedAt;
  assert.equal(ended.state, 'ended');
  assert.equal(ended.reason, 'sandbox_exited');
  assert.equal(ended.detail, `The sandbox ${sandboxId} exited (agent exited: signal SIGKILL).`);
  assert.ok(endedMs <= reconcileIntervalMs + 3_000, `ended within one reconcile interval (+ slack): ${endedMs} ms`);
  const after = await diagnose(t, session.id);
  assert.equal(after.firstFailure, null, showDiagnosis(after));
  assert.equal(hopOf(after, 'store').details.detail, ended.detail);

  const late = await openViewerSocket(freshViewerUrl(t, session.id));
  assert.ok('ws' in late, 'refused' in late ? JSON.stringify(late.refused) : '');
  assert.deepEqual(await nextClose(late.ws), { code: 4410, reason: 'SESSION_ENDED' });
  await assertNothingLeft(t, sandboxId);
  const cleanMs = Date.now() - killedAt;
  tc.diagnostic(
    `agent SIGKILL → diagnosis named it (${early.state === 'ended' ? 'session already ended' : `driver: ${early.firstFailure?.cause}`}) after ≤ ${diagnosedMs} ms; session ended/sandbox_exited by the reconciler after ≤ ${endedMs} ms; viewer closed ${closed.code} ${closed.reason} after ${closeMs} ms; the orphaned desktop destroyed, nothing left, after ≤ ${cleanMs} ms`,
  );
});
