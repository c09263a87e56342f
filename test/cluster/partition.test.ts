import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { NodeView } from '../../src/protocol/nodes.js';
import { startCluster, type TestCluster } from '../support/cluster.js';
import { sandboxProcesses } from '../support/sandbox-processes.js';
import { elapse, until } from '../support/until.js';

// Issue 12: a node cut off from the network (its veth down on the bridge: packets dropped, as on a
// pulled cable) cannot reach the catalog, so it fences itself — ends its sandboxes, which may hold
// secrets — before the reaper, on the servers, declares it lost and fails its sessions NODE_LOST.
// Back on the network it registers with a new generation, and the sessions it held under the old
// one stay as the reaper left them: it cannot touch them.

const leaseMs = 4_000;
let cluster: TestCluster;

before(async () => {
  cluster = await startCluster({
    name: 'cluster-partition',
    roles: 'split',
    servers: 2,
    nodes: 3,
    // The lease on the servers too: their reaper looks every lease/5.
    env: { PORTHOLE_NODE_LEASE_MS: String(leaseMs) },
    nodeEnv: { PORTHOLE_NODE_CAPACITY: '2' },
  });
});

after(async () => {
  await cluster?.stop();
});

test('partition a node: it fences itself before the reaper fires; healed, with a stale generation it cannot touch its old sessions', async (t) => {
  await cluster.withLogs(async () => {
    const created = await Promise.all([1, 2, 3].map(() => cluster.api.createSession({ userId: 'partition' })));
    const victimId = created[0]!.node!.id;
    const victim = cluster.member(victimId);
    const session = await until(
      `session ${created[0]!.id} on ${victimId} is up`,
      () => cluster.api.getSession(created[0]!.id),
      (s) => s.state !== 'starting',
      60_000,
    );
    assert.ok(session.state === 'ready' || session.state === 'authenticating', `${session.state}: ${session.detail}`);
    const sandboxId = session.sandboxId!;
    const oldGeneration = session.node!.generation;
    assert.ok((await sandboxProcesses(sandboxId)).length > 0, 'its sandbox runs');

    const cutAt = Date.now();
    await cluster.partition(victim);
    // Both clocks at once: the node's own fence (its sandbox gone, seen in /proc) and the reaper's
    // verdict (the catalog). Each is recorded; the order is judged at the end, after the heal.
    const [fencedMs, reaped] = await Promise.all([
      until(
        `${victimId} ends sandbox ${sandboxId} on its own`,
        () => sandboxProcesses(sandboxId),
        (left) => left.length === 0,
        6 * leaseMs,
        {
          intervalMs: 50,
        },
      ).then(
        () => Date.now() - cutAt,
        () => null,
      ),
      until(
        `session ${session.id} fails NODE_LOST`,
        () => cluster.api.getSession(session.id),
        (s) => s.state === 'failed' || s.state === 'ended',
        4 * leaseMs,
        {
          intervalMs: 50,
        },
      ).then((s) => ({ session: s, ms: Date.now() - cutAt })),
    ]);
    assert.deepEqual([reaped.session.state, reaped.session.reason], ['failed', 'NODE_LOST'], reaped.session.detail ?? '');
    const failedVersion = reaped.session.version;

    const healedAt = Date.now();
    await cluster.heal(victim);
    const back = await until(
      `${victimId} registered again with a new generation`,
      async () => (await cluster.api.request<{ nodes: NodeView[] }>('GET', '/v1/nodes')).nodes.find((n) => n.id === victimId),
      (n) => n?.state === 'active' && n.generation > oldGeneration,
      6 * leaseMs,
    );
    const backMs = Date.now() - healedAt;
    // A few heartbeats and reconcile passes of the node under its new generation: the old session stays as the reaper left it.
    await elapse(leaseMs, 'a lease of the healed node’s heartbeats and reconcile passes, which must leave its old generation’s session alone');
    const still = await cluster.api.getSession(session.id);
    assert.deepEqual(
      [still.state, still.reason, still.version],
      ['failed', 'NODE_LOST', failedVersion],
      'the old session is untouched by the node under its new generation',
    );
    assert.deepEqual(await sandboxProcesses(sandboxId), [], 'its sandbox is gone');

    // The healed node takes new sessions again (least loaded: it has none now).
    const fresh = await cluster.api.createSession({ userId: 'after-heal' });
    assert.equal(fresh.node?.id, victimId, `the emptiest node, ${victimId}, takes the next session`);
    t.diagnostic(
      `partitioned ${victimId} (generation ${oldGeneration}): fenced itself (sandbox gone) after ${fencedMs ?? `more than ${6 * leaseMs}`} ms, reaper failed its session NODE_LOST after ${reaped.ms} ms (lease ${leaseMs} ms); healed: back as generation ${back!.generation} in ${backMs} ms; old session unchanged`,
    );
    for (const s of [...created, fresh]) await cluster.api.endSession(s.id).catch(() => {});
    // The order of the two decisions, each by its own record on this one machine's clock: the node's
    // log line (it then ends its sandboxes, a moment more) and the catalog's failure event.
    const fenceLine = (await cluster.logOf(victim))
      .split('\n')
      .filter((line) => line.includes('"msg":"node fenced itself'))
      .map((line) => JSON.parse(line) as { time: string })
      .find((line) => Date.parse(line.time) >= cutAt);
    const failedAt = (await cluster.api.listEvents(session.id)).events.find((e) => e.to === 'failed')?.at;
    assert.ok(fenceLine, `${victimId} says it fenced itself`);
    assert.ok(failedAt, 'the failure is on the timeline');
    const fenceDecidedMs = Date.parse(fenceLine.time) - cutAt;
    const reapDecidedMs = Date.parse(failedAt) - cutAt;
    t.diagnostic(`decisions: ${victimId} fenced itself ${fenceDecidedMs} ms after the cut, the reaper failed its session ${reapDecidedMs} ms after it`);
    assert.ok(fenceDecidedMs < reapDecidedMs, `the node fenced itself (${fenceDecidedMs} ms) before the reaper fired (${reapDecidedMs} ms)`);
    assert.ok(fencedMs !== null, `and its sandbox was gone within ${6 * leaseMs} ms`);
    // The fence kills at once (no grace for the agent): the sandbox, which may hold secrets, is gone
    // before the catalog gives its session up, not only decided on.
    assert.ok(fencedMs < reaped.ms, `its sandbox was gone (${fencedMs} ms) before the reaper failed its session (${reaped.ms} ms)`);
  })();
});
