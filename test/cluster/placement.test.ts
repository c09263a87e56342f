import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { NodeView } from '../../src/protocol/nodes.js';
import type { Session } from '../../src/protocol/session.js';
import { startCluster, type TestCluster } from '../support/cluster.js';
import { sandboxProcesses } from '../support/sandbox-processes.js';
import { until } from '../support/until.js';
import { closeViewer, connectViewer, expectFramebufferUpdate, viewerSocketUrl } from '../support/ws.js';

// Issue 12, placement and reaching a session: three porthole nodes of capacity 2, two servers behind
// haproxy, one PostgreSQL. 30 creates at once through haproxy (so through both servers): six are
// placed — two on each node, none above its capacity — and the other 24 are refused NO_CAPACITY. A
// viewer then reaches one of those sessions through either server (the edge relay pipes it to the
// node's relay) and gets RFB.

const capacity = 2;
const creates = 30;
let cluster: TestCluster;

before(async () => {
  cluster = await startCluster({
    name: 'cluster-placement',
    roles: 'split',
    servers: 2,
    nodes: 3,
    env: { PORTHOLE_NODE_LEASE_MS: '4000' },
    // Each node reconciles every 100 ms: a session placed on a node and not yet booted there must
    // survive the node's passes (a slower tick only hides the race, it does not close it).
    nodeEnv: { PORTHOLE_NODE_CAPACITY: String(capacity), PORTHOLE_BOOT_TIMEOUT_MS: '90000', PORTHOLE_RECONCILE_INTERVAL_MS: '100' },
  });
});

after(async () => {
  await cluster?.stop();
});

/** POST /v1/sessions through haproxy's balanced frontend: the status and the session or the error code. */
async function create(): Promise<{ status: number; session?: Session; code?: string }> {
  const response = await fetch(`${cluster.url}/v1/sessions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${cluster.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ userId: 'placement' }),
  });
  const body = (await response.json()) as Session & { error?: { code: string } };
  return response.status === 201 ? { status: 201, session: body } : { status: response.status, code: body.error?.code ?? '?' };
}

let placed: Session[] = [];

test('30 concurrent creates: no node above its capacity, the sessions spread, the rest refused NO_CAPACITY', async (t) => {
  await cluster.withLogs(async () => {
    const startedAt = Date.now();
    const answers = await Promise.all(Array.from({ length: creates }, () => create()));
    const answeredMs = Date.now() - startedAt;
    placed = answers.flatMap((a) => (a.session ? [a.session] : []));
    const refused = answers.filter((a) => a.status !== 201);
    const refusals = [...new Set(refused.map((a) => `${a.status} ${a.code}`))];
    const perNode = new Map<string, number>();
    for (const session of placed) {
      const node = session.node?.id;
      assert.ok(node, `session ${session.id} names its node`);
      perNode.set(node, (perNode.get(node) ?? 0) + 1);
    }
    assert.equal(
      placed.length,
      3 * capacity,
      `every node full, no more: ${placed.length} placed (${[...perNode.entries()]
        .sort()
        .map(([n, c]) => `${n} ${c}`)
        .join(', ')}), refusals ${refusals.join(', ')}`,
    );
    assert.deepEqual(refusals, ['503 NO_CAPACITY'], 'every other create is refused NO_CAPACITY');

    assert.deepEqual(
      [...perNode.entries()].sort(),
      cluster.nodes.map((n) => [n.name, capacity]),
      'each node got exactly its capacity: spread, none above',
    );

    // Every placed session comes up on its node; the catalog's load never passes capacity.
    const ready = await Promise.all(
      placed.map((s) =>
        until(
          `session ${s.id} leaves starting`,
          () => cluster.api.getSession(s.id),
          (now) => now.state !== 'starting',
          120_000,
          { intervalMs: 250 },
        ),
      ),
    );
    for (const s of ready) assert.ok(s.state === 'ready' || s.state === 'authenticating', `${s.id} on ${s.node?.id}: ${s.state} (${s.reason}: ${s.detail})`);
    const { nodes } = await cluster.api.request<{ nodes: NodeView[] }>('GET', '/v1/nodes');
    for (const node of nodes) {
      assert.equal(node.state, 'active', `${node.id} is active`);
      assert.ok(node.load <= node.capacity, `${node.id}: load ${node.load} ≤ capacity ${node.capacity}`);
    }
    t.diagnostic(
      `${creates} creates answered in ${answeredMs} ms: ${placed.length} placed (${[...perNode.entries()].map(([n, c]) => `${n} ${c}`).join(', ')}), ${refused.length} NO_CAPACITY; all ${ready.length} up ${Date.now() - startedAt} ms after the first create`,
    );
  })();
});

test('a viewer reaches a session on a node through either server (haproxy → edge relay → node relay): RFB', async (t) => {
  await cluster.withLogs(async () => {
    const session = placed[0];
    assert.ok(session, 'a placed session (the test above)');
    for (const server of cluster.servers) {
      const api = cluster.apiVia(server);
      const { ticket } = await api.createTicket(session.id);
      const startedAt = Date.now();
      const viewer = await connectViewer(viewerSocketUrl(server.proxyUrl!, session.id, ticket), { origin: server.proxyUrl! });
      await expectFramebufferUpdate(viewer);
      t.diagnostic(`through ${server.name} (${server.proxyUrl}) to ${session.node?.id}: RFB and a framebuffer update in ${Date.now() - startedAt} ms`);
      await closeViewer(viewer);
    }

    // Ended through the API, every sandbox goes from its node.
    await Promise.all(placed.map((s) => cluster.api.endSession(s.id)));
    for (const s of placed) {
      const ended = await cluster.api.getSession(s.id);
      assert.equal(ended.state, 'ended');
      if (s.sandboxId ?? ended.sandboxId)
        await until(
          `session ${s.id}'s sandbox is gone`,
          () => sandboxProcesses((s.sandboxId ?? ended.sandboxId)!),
          (left) => left.length === 0,
          30_000,
        );
    }
  })();
});

test('drain: a drained node takes no new session and an undrained one does; SIGTERM drains a node, its live session ends when the drain times out', async (t) => {
  await cluster.withLogs(async () => {
    const [first, , third] = cluster.nodes as [(typeof cluster.nodes)[0], (typeof cluster.nodes)[0], (typeof cluster.nodes)[0]];
    const drained = await cluster.api.request<NodeView>('POST', `/v1/nodes/${first.name}/drain`);
    assert.equal(drained.state, 'draining');
    const answers = await Promise.all(Array.from({ length: 2 * capacity + 1 }, () => create()));
    const sessions = answers.flatMap((a) => (a.session ? [a.session] : []));
    assert.equal(sessions.length, 2 * capacity, 'the two other nodes fill up');
    assert.ok(
      sessions.every((s) => s.node?.id !== first.name),
      `none on the draining ${first.name}: ${sessions.map((s) => s.node?.id).join(', ')}`,
    );
    assert.deepEqual(
      answers.filter((a) => a.status !== 201).map((a) => a.code),
      ['NO_CAPACITY'],
      'the last one finds no room: a draining node has none',
    );
    const undrained = await cluster.api.request<NodeView>('POST', `/v1/nodes/${first.name}/undrain`);
    assert.equal(undrained.state, 'active');
    const next = await create();
    assert.equal(next.session?.node?.id, first.name, `undrained, ${first.name} takes the next session`);
    await Promise.all([...sessions, next.session!].filter((s) => s.node?.id !== third.name).map((s) => cluster.api.endSession(s.id)));

    // The engine's drain (a rollout, a node drain) is a SIGTERM: the node drains, its live sessions
    // have PORTHOLE_DRAIN_TIMEOUT_MS (5 s here) to finish, then it ends them and exits.
    const onThird = sessions.filter((s) => s.node?.id === third.name);
    assert.equal(onThird.length, capacity);
    for (const s of onThird)
      await until(
        `session ${s.id} is up`,
        () => cluster.api.getSession(s.id),
        (now) => now.state !== 'starting',
        60_000,
      );
    const termAt = Date.now();
    const stopped = cluster.sigterm(third);
    const draining = await until(
      `${third.name} is draining`,
      async () => (await cluster.api.request<{ nodes: NodeView[] }>('GET', '/v1/nodes')).nodes.find((n) => n.id === third.name)?.state,
      (state) => state === 'draining',
      5_000,
      { intervalMs: 100 },
    );
    assert.equal(draining, 'draining');
    await stopped;
    const stoppedMs = Date.now() - termAt;
    for (const s of onThird) {
      const ended = await cluster.api.getSession(s.id);
      assert.deepEqual([ended.state, ended.reason], ['ended', 'shutdown'], `${s.id}: ${ended.detail}`);
    }
    assert.match(await cluster.logOf(third), /exited \(0\)/, `${third.name} exited 0 after its drain`);
    t.diagnostic(
      `drained ${first.name}: placed on the others, then on it once undrained; SIGTERM ${third.name}: draining, its 2 sessions ended (shutdown) and it exited after ${stoppedMs} ms`,
    );
  })();
});
