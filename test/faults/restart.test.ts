import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { agentHealth, assertNothingLeft, within } from '../support/faults.js';
import { createTestDataDir, removeTestDataDir, startTestServerIn, type RestartableTestServer } from '../support/restartable-server.js';
import { isAlive, sandboxProcess } from '../support/sandbox-processes.js';
import { closeViewer, connectViewer, expectFramebufferUpdate, viewerSocketUrl } from '../support/ws.js';

// The server restarts under a connected viewer: the viewer is told 4503 SERVER_SHUTTING_DOWN; the
// next server on the same data directory adopts the running sandbox (same sandbox, not
// restarted), a new viewer gets RFB, and tickets of the first server still verify (the signing
// key lives in the data directory).

const name = 'faults-restart';
let dataDir: string | undefined;
let second: RestartableTestServer | undefined;

after(async () => {
  if (!dataDir) return;
  // Whatever happened, a server on the data directory ends the sessions and destroys the sandboxes.
  second ??= await startTestServerIn(dataDir, name).catch(() => undefined);
  if (second) await second.stop();
  else await removeTestDataDir(dataDir);
});

test('server restart with a viewer connected: 4503, then the session is adopted and viewers reconnect', async (tc) => {
  dataDir = await createTestDataDir();
  const first = await startTestServerIn(dataDir, name);
  let isFirstClosed = false;
  try {
    const session = await first.readySession();
    const sandboxId = session.sandboxId!;
    const agent = await sandboxProcess(sandboxId, 'node');
    const xvnc = await sandboxProcess(sandboxId, 'Xvnc');
    const oldTicket = await first.api.createTicket(session.id);
    const viewer = await connectViewer(viewerSocketUrl(first.server.url, session.id, oldTicket.ticket));
    await first.waitForState(session.id, ['authenticating'], 5_000);

    const closingAt = Date.now();
    await first.close();
    isFirstClosed = true;
    const closed = await within(viewer.closed, 5_000, 'the viewer is closed');
    assert.deepEqual({ code: closed.code, reason: closed.reason }, { code: 4503, reason: 'SERVER_SHUTTING_DOWN' });
    const closeMs = closed.at - closingAt;
    const closedMs = Date.now() - closingAt;
    assert.ok((await isAlive(agent)) && (await isAlive(xvnc)), 'the sandbox runs on while no server does');

    const restartAt = Date.now();
    second = await startTestServerIn(dataDir, name);
    const startMs = Date.now() - restartAt;
    const adopted = await second.api.getSession(session.id);
    assert.equal(adopted.state, 'ready', 'adopted at start-up: nobody is connected to the new server yet');
    assert.equal(adopted.sandboxId, sandboxId, 'the same sandbox');
    const { events } = await second.api.listEvents(session.id);
    // Why it is ready again: the new server adopted it with nobody connected (no_viewer), or the
    // first one still recorded its viewer leaving (viewer_left) before its store closed.
    // (The sandbox's own egress events may come after it: the last *state* event is the one.)
    const back = events.filter((e) => e.type.startsWith('session.')).at(-1);
    assert.deepEqual([back?.type, back?.from, back?.to], ['session.ready', 'authenticating', 'ready'], 'the timeline says it is ready again');
    assert.ok(back?.reason === 'no_viewer' || back?.reason === 'viewer_left', `reason ${back?.reason}`);
    assert.ok((await isAlive(agent)) && (await isAlive(xvnc)), 'the agent and Xvnc were not restarted');
    const health = await agentHealth(second, sandboxId);
    assert.ok(health.healthy, 'the adopted sandbox is healthy');
    assert.equal(health.processes.find((p) => p.name === 'vnc')?.restarts, 0, 'Xvnc never restarted');

    const fresh = await second.api.createTicket(session.id);
    assert.ok(fresh.viewerUrl.startsWith(second.server.url), fresh.viewerUrl);
    const again = await connectViewer(viewerSocketUrl(second.server.url, session.id, fresh.ticket));
    const rfbMs = Date.now() - restartAt;
    await expectFramebufferUpdate(again);
    await second.waitForState(session.id, ['authenticating'], 5_000);

    // The first server's ticket: the key is the same file, so it still verifies (within its 60 s).
    assert.doesNotThrow(() => second!.server.tickets.verify(oldTicket.ticket, session.id));
    assert.equal((await stat(join(dataDir, 'signing.key'))).mode & 0o777, 0o600, 'the signing key is kept private');
    const withOldTicket = await connectViewer(viewerSocketUrl(second.server.url, session.id, oldTicket.ticket));
    await expectFramebufferUpdate(withOldTicket);
    tc.diagnostic(
      `close() → viewer closed 4503 SERVER_SHUTTING_DOWN after ${closeMs} ms (close() returned after ${closedMs} ms); new server up in ${startMs} ms with the session adopted (ready, same sandbox, agent pid ${agent.pid} unchanged); a new viewer got RFB ${rfbMs} ms after the restart began`,
    );

    await closeViewer(again);
    await closeViewer(withOldTicket);
    await second.api.endSession(session.id);
    await assertNothingLeft(second, sandboxId);
  } finally {
    if (!isFirstClosed) await first.close();
  }
});
