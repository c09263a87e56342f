import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { SandboxId, SessionId } from '../../src/protocol/ids.js';
import type { Session } from '../../src/protocol/session.js';
import type { Metrics } from '../../src/server/metrics.js';
import { createTestDataDir, removeTestDataDir, startTestServerIn, type RestartableTestServer } from '../support/restartable-server.js';
import { killProcess, sandboxProcess } from '../support/sandbox-processes.js';
import { sandboxTarget, spawnInSandbox } from '../support/sandbox-shell.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { until } from '../support/until.js';

// The warm pool (src/server/sessions/warm-pool.ts) on real sandboxes: a create takes a desktop
// started ahead and says so in its timeline; the desktop it gets never served anyone (a fresh
// sandbox, token and home: nothing of the session before); the pool refills after a hit, keeps
// within PORTHOLE_MAX_SESSIONS, discards a desktop that fails its check, survives a restart (the
// next server adopts what is marked and answers), and PORTHOLE_WARM_POOL=0 starts nothing.

async function counter(metric: Metrics['warmPoolTakes'] | Metrics['warmPoolDiscards'], labels: Record<string, string>): Promise<number> {
  const { values } = await metric.get();
  return values
    .filter((v) => Object.entries(labels).every(([k, want]) => (v.labels as Record<string, unknown>)[k] === want))
    .reduce((sum, v) => sum + v.value, 0);
}

async function poolReady(t: TestServer, count = 1): Promise<SandboxId[]> {
  const pool = t.server.sessions.pool;
  assert.ok(pool, 'the server has a warm pool');
  await until(
    `${count} pooled desktop(s) ready`,
    () => pool.readyCount,
    (n) => n >= count,
    60_000,
  );
  return (await t.server.store.listPooledSandboxes()).map((p) => p.sandboxId);
}

async function sandboxStep(t: TestServer, id: SessionId): Promise<Record<string, unknown>> {
  const { events } = await t.api.listEvents(id);
  const step = events.find((e) => e.type === 'step.succeeded' && e.details.step === 'sandbox');
  assert.ok(step, `a sandbox step on the timeline of ${id}`);
  return step.details;
}

const tokenHash = async (t: TestServer, id: SessionId) => t.server.store.getAgentTokenHash(id);

describe('warm pool', () => {
  let t: TestServer;
  after(() => t?.stop());

  test('a create takes a pooled desktop: warm on its timeline, a hit, and the pool refills with another', async () => {
    t = await startTestServer('warm-pool', { PORTHOLE_WARM_POOL: '1', PORTHOLE_MAX_SESSIONS: '3' });
    const [pooled] = await poolReady(t);
    assert.ok(pooled);
    const session = await t.readySession({ provider: 'demo' });
    assert.equal(session.sandboxId, pooled, 'the session runs in the pooled desktop');
    assert.equal((await sandboxStep(t, session.id)).warm, true);
    assert.equal(await counter(t.server.metrics.warmPoolTakes, { outcome: 'hit' }), 1);
    assert.ok(!(await t.server.store.listPooledSandboxes()).some((p) => p.sandboxId === pooled), 'its pool mark is gone');
    const opened = await until(
      'the sign-in page opened in the pooled desktop’s Chromium',
      async () => (await t.api.listEvents(session.id)).events.find((e) => e.type === 'login.browser_opened'),
      (event) => event !== undefined,
      30_000,
    );
    assert.equal(opened?.details.how, 'devtools', 'as a new tab of the running Chromium, asked over its DevTools pipe');

    const [refilled] = await poolReady(t);
    assert.ok(refilled && refilled !== pooled, 'a new desktop refills the pool');
    const running = (await t.server.driver.list()).map((s) => s.id).sort();
    assert.deepEqual(running, [pooled, refilled].sort(), 'one sandbox for the session, one pooled: nothing else runs');
    await t.server.sessions.end(session.id, 'user');
  });

  test('the next session gets a desktop that never served anyone: another sandbox, a fresh token, nothing of the first session in its home', async () => {
    const first = await t.readySession({ provider: 'demo' });
    // The person in the first session leaves traces: a file in their home and in Chromium's profile.
    const shell = spawnInSandbox(await sandboxTarget(t.dataDir, first.sandboxId!), [
      '/bin/sh',
      '-c',
      'echo secret > ~/trace && echo secret > ~/.config/chromium/trace && echo done',
    ]);
    await shell.waitForOutput(/done/, 10_000);
    await shell.kill();
    await t.server.sessions.end(first.id, 'user');
    assert.equal(await t.server.driver.inspect(first.sandboxId as SandboxId), null, 'the first session’s sandbox is destroyed');

    await poolReady(t);
    const second = await t.readySession({ provider: 'demo' });
    assert.equal((await sandboxStep(t, second.id)).warm, true, 'served from the pool');
    assert.notEqual(second.sandboxId, first.sandboxId);
    const all = await t.server.store.listSessions({ limit: 10_000 });
    assert.deepEqual(
      all.filter((s: Session) => s.sandboxId === second.sandboxId).map((s) => s.id),
      [second.id],
      'no other session ever had this sandbox',
    );
    const [firstHash, secondHash] = [await tokenHash(t, first.id), await tokenHash(t, second.id)];
    assert.ok(secondHash && secondHash !== firstHash, 'a fresh sandbox token');
    const look = spawnInSandbox(await sandboxTarget(t.dataDir, second.sandboxId!), [
      '/bin/sh',
      '-c',
      'ls -A ~; ls -A ~/.config/chromium; cat ~/trace ~/.config/chromium/trace 2>&1; echo end',
    ]);
    const seen = await look.waitForOutput(/end\n$/, 10_000);
    await look.kill();
    assert.doesNotMatch(seen, /secret/, 'nothing the first person wrote');
    assert.match(seen, /No such file/, 'no trace file at all');
    await t.server.sessions.end(second.id, 'user');
  });

  test('a pooled desktop that fails its check is destroyed, never handed out: the session starts its own', async () => {
    const [pooled] = await poolReady(t);
    const discardedBefore = await counter(t.server.metrics.warmPoolDiscards, {});
    // Its agent gone, the desktop no longer answers (the sandbox ends with it).
    await killProcess(await sandboxProcess(pooled!, 'node'));
    const session = await t.readySession({ provider: 'demo' });
    assert.notEqual(session.sandboxId, pooled, 'not the broken desktop');
    assert.ok((await counter(t.server.metrics.warmPoolDiscards, {})) > discardedBefore, 'the broken desktop was discarded');
    assert.equal(await t.server.driver.inspect(pooled!), null, 'and destroyed');
    await t.server.sessions.end(session.id, 'user');
  });
});

test('the pool keeps live sessions and pooled desktops within PORTHOLE_MAX_SESSIONS', async () => {
  const t = await startTestServer('warm-pool-max', { PORTHOLE_WARM_POOL: '2', PORTHOLE_MAX_SESSIONS: '2' });
  try {
    await poolReady(t, 2);
    const one = await t.readySession({ provider: 'demo' });
    const two = await t.readySession({ provider: 'demo' });
    const pool = t.server.sessions.pool!;
    await t.server.sessions.reconcile();
    await pool.idle();
    assert.equal(pool.readyCount + pool.startingCount, 0, 'no room left: the pool holds nothing');
    assert.equal((await t.server.driver.list()).length, 2, 'two sandboxes, both sessions’');
    await t.server.sessions.end(one.id, 'user');
    await poolReady(t, 1);
    assert.equal((await t.server.driver.list()).length, 2, 'a freed place is refilled, and no more');
    await t.server.sessions.end(two.id, 'user');
  } finally {
    await t.stop();
  }
});

test('after a restart the next server adopts the pooled desktop and hands it out; with the pool off it destroys it', async () => {
  const dataDir = await createTestDataDir();
  let server: RestartableTestServer | undefined;
  try {
    server = await startTestServerIn(dataDir, 'warm-pool-restart', { PORTHOLE_WARM_POOL: '1' });
    const [pooled] = await poolReady(server);
    await server.close();

    server = await startTestServerIn(dataDir, 'warm-pool-restart', { PORTHOLE_WARM_POOL: '1' });
    assert.equal(server.server.sessions.pool?.readyCount, 1, 'adopted by the start-up reconcile');
    const session = await server.readySession({ provider: 'demo' });
    assert.equal(session.sandboxId, pooled, 'the adopted desktop is handed out');
    assert.equal((await sandboxStep(server, session.id)).warm, true);
    await server.server.sessions.end(session.id, 'user');
    const [next] = await poolReady(server);
    await server.close();

    server = await startTestServerIn(dataDir, 'warm-pool-restart', { PORTHOLE_WARM_POOL: '0' });
    assert.equal(server.server.sessions.pool, null, 'PORTHOLE_WARM_POOL=0: no pool');
    assert.equal(await server.server.driver.inspect(next!), null, 'the pooled desktop is destroyed at start-up');
    assert.deepEqual(await server.server.store.listPooledSandboxes(), [], 'and its mark is gone');
    const cold = await server.readySession({ provider: 'demo' });
    assert.equal((await sandboxStep(server, cold.id)).warm, false, 'sessions start their own desktop');
    assert.deepEqual(
      (await server.server.driver.list()).map((s) => s.id),
      [cold.sandboxId],
      'nothing started ahead',
    );
  } finally {
    if (server) await server.stop();
    else await removeTestDataDir(dataDir);
  }
});
