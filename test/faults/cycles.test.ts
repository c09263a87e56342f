import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { assertNothingLeft, freshViewerUrl } from '../support/faults.js';
import type { SessionId } from '../../src/protocol/ids.js';
import { openFdCount, sandboxProcess, sandboxProcesses } from '../support/sandbox-processes.js';
import { until, untilDefined, untilSteady } from '../support/until.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { closeOf, createReader, openViewerSocket, rfbHandshake } from '../support/ws.js';

// 200 viewers connect, complete the RFB handshake and leave, one after the other. The server (it runs
// in this process), the sandbox and its Xvnc must hold no more after them than after a warm-up of
// 50: open fds, processes, relay connections, viewers — and the session is back to `ready`.

const warmUp = 50;
/** Enough that a leak of one fd, process or connection per viewer stands far above fdSlack (the suite's time is shared). */
const cycles = 200;
/** Slack for fds that come and go on their own (the PGlite WAL, a log write, a timer's socket). */
const fdSlack = 5;
let t: TestServer;

before(async () => {
  t = await startTestServer('faults-cycles', { PORTHOLE_LOG_LEVEL: 'info' });
});
after(() => t?.stop());

/**
 * One viewer: open, the RFB handshake through ServerInit (as noVNC does), close. Not just the
 * banner: unless started with -UseBlacklist=0, Xvnc counts a client that leaves before
 * authenticating as a security failure and, after five, refuses every client of the sandbox for
 * 10 s (cycles.pending.ts holds the banner-only variant).
 */
async function cycle(url: string): Promise<void> {
  const opened = await openViewerSocket(url);
  if ('refused' in opened) throw new Error(`refused: ${opened.refused.status} ${opened.refused.code}`);
  const { ws } = opened;
  const closed = closeOf(ws);
  await rfbHandshake(ws, createReader(ws));
  ws.close(1000);
  const close = await closed;
  if (close.code !== 1000) throw new Error(`closed ${close.code} ${close.reason}`);
}

/** Waits until the relay and the session have taken in the last disconnect, then takes a reading. */
async function settledReading(sessionId: string, sandboxId: string, xvncPid: number) {
  await untilDefined('the relay lets go of the last viewer', async () => (t.server.relay.stats().length === 0 ? true : undefined), 5_000, {
    intervalMs: 50,
    canProbeFail: true,
  });
  // viewer.disconnected is recorded after the socket closes, before the session goes back to ready.
  await until(
    'the timeline records the last viewer leaving',
    async () => ({
      connected: await t.server.store.countEvents(sessionId as SessionId, ['viewer.connected']),
      disconnected: await t.server.store.countEvents(sessionId as SessionId, ['viewer.disconnected']),
    }),
    ({ connected, disconnected }) => disconnected === connected,
    5_000,
    { intervalMs: 50 },
  );
  await t.waitForState(sessionId, ['ready'], 5_000);
  return {
    serverFds: await openFdCount('self'),
    sandboxProcesses: (await sandboxProcesses(sandboxId)).length,
    xvncFds: await openFdCount(xvncPid),
    rss: process.memoryUsage().rss,
  };
}

test(`${cycles} viewer connect/disconnect cycles leak no fd, process or connection`, async (tc) => {
  const session = await t.readySession();
  const sandboxId = session.sandboxId!;
  // Let Chromium finish starting its helpers, so its own process count is steady (no signal says
  // when it is done: a count that holds still for a second is all there is).
  await untilSteady(
    "the sandbox's process count",
    async () => (await sandboxProcesses(sandboxId)).length,
    (n) => n > 0,
    1_000,
    30_000,
    { intervalMs: 100 },
  );
  const xvnc = await sandboxProcess(sandboxId, 'Xvnc');
  // A fresh ticket each time, as the viewer page renews its own: the run may outlast one ticket's 60 s.
  const url = () => freshViewerUrl(t, session.id);

  for (let i = 0; i < warmUp; i++) await cycle(url());
  const base = await settledReading(session.id, sandboxId, xvnc.pid);
  const started = Date.now();
  for (let i = 0; i < cycles; i++) {
    try {
      await cycle(url());
    } catch (error) {
      throw new Error(`cycle ${i + 1}: ${(error as Error).message}`, { cause: error });
    }
  }
  const cyclesMs = Date.now() - started;
  const end = await settledReading(session.id, sandboxId, xvnc.pid);

  tc.diagnostic(
    `${cycles} cycles in ${cyclesMs} ms (${(cyclesMs / cycles).toFixed(1)} ms each); after warm-up → after: server fds ${base.serverFds} → ${end.serverFds}, sandbox processes ${base.sandboxProcesses} → ${end.sandboxProcesses}, Xvnc fds ${base.xvncFds} → ${end.xvncFds}, server RSS ${Math.round(base.rss / 1048576)} → ${Math.round(end.rss / 1048576)} MiB`,
  );
  assert.ok(end.serverFds <= base.serverFds + fdSlack, `server fds ${base.serverFds} → ${end.serverFds}`);
  assert.ok(end.sandboxProcesses <= base.sandboxProcesses, `sandbox processes ${base.sandboxProcesses} → ${end.sandboxProcesses}`);
  assert.ok(end.xvncFds <= base.xvncFds + 1, `Xvnc fds ${base.xvncFds} → ${end.xvncFds}`);
  assert.equal((await sandboxProcess(sandboxId, 'Xvnc')).pid, xvnc.pid, 'Xvnc never restarted');

  const { events } = await t.api.listEvents(session.id);
  const connected = events.filter((e) => e.type === 'viewer.connected').length;
  const disconnected = events.filter((e) => e.type === 'viewer.disconnected').length;
  assert.equal(connected, warmUp + cycles, 'every viewer is in the timeline');
  assert.equal(disconnected, connected, 'and every one left');

  await t.api.endSession(session.id);
  await assertNothingLeft(t, sandboxId);
});
