import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Session } from '../../src/protocol/session.js';
import { startCluster, type TestCluster } from '../support/cluster.js';
import { sandboxProcesses } from '../support/sandbox-processes.js';
import { elapse, until } from '../support/until.js';

// Issue 12's regression: two all-in-one servers (`porthole start`) on one PostgreSQL, each in its
// own network namespace. Each reconciles what its own driver runs against the store; before nodes,
// each saw the other's sessions missing from its driver and ended them as sandbox_exited. Neither
// may end, nor touch, the other's sessions.

const reconcileIntervalMs = 500;
let cluster: TestCluster;

before(async () => {
  cluster = await startCluster({
    name: 'cluster-all-in-one-pair',
    roles: 'all-in-one',
    servers: 2,
    demoIssuer: false,
    env: { PORTHOLE_RECONCILE_INTERVAL_MS: String(reconcileIntervalMs) },
  });
});

after(async () => {
  await cluster?.stop();
});

test('two all-in-one servers on one PostgreSQL: neither ends the other’s sessions', async (t) => {
  await cluster.withLogs(async () => {
    const [one, two] = cluster.servers as [(typeof cluster.servers)[0], (typeof cluster.servers)[0]];
    const apis = [cluster.apiVia(one), cluster.apiVia(two)] as const;
    const waitReady = (api: (typeof apis)[number], id: string) =>
      until(
        `session ${id} leaves starting`,
        () => api.getSession(id),
        (s: Session) => s.state !== 'starting',
        60_000,
        { intervalMs: 100 },
      );
    const created = await Promise.all(apis.map((api) => api.createSession({ userId: 'pair' })));
    const sessions = await Promise.all(created.map((s, i) => waitReady(apis[i]!, s.id)));
    for (const session of sessions) assert.equal(session.state, 'ready', `${session.id}: ${session.state} (${session.reason}: ${session.detail})`);
    t.diagnostic(`server1 holds ${sessions[0]!.id} (sandbox ${sessions[0]!.sandboxId}), server2 holds ${sessions[1]!.id} (sandbox ${sessions[1]!.sandboxId})`);

    // Each server's reconciler passes every 500 ms: ten passes of each over both sessions.
    await elapse(10 * reconcileIntervalMs, 'ten reconcile passes of each server, which must leave the other server’s session alone');

    for (const session of sessions) {
      // Read through both servers: one store, one answer.
      for (const api of apis) {
        const now = await api.getSession(session.id);
        assert.equal(
          now.state,
          'ready',
          `session ${session.id} is ${now.state} (${now.reason}: ${now.detail}) seen through ${api === apis[0] ? 'server1' : 'server2'}`,
        );
      }
      const { events } = await apis[0].listEvents(session.id);
      const ended = events.filter((e) => e.to === 'ended' || e.to === 'failed');
      assert.deepEqual(ended, [], `session ${session.id} was never ended`);
      assert.ok((await sandboxProcesses(session.sandboxId!)).length > 0, `session ${session.id}'s sandbox ${session.sandboxId} still runs`);
    }

    // And each still ends where it lives.
    await Promise.all(sessions.map((s, i) => apis[i]!.endSession(s.id)));
    for (const session of sessions) {
      await until(
        `session ${session.id}'s sandbox is gone`,
        () => sandboxProcesses(session.sandboxId!),
        (found) => found.length === 0,
        30_000,
      );
    }
  })();
});
