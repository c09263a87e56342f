import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launchBrowser } from '../support/browser.js';
import { dashboardVia } from '../support/cluster-demo-login.js';
import { startCluster, type ClusterMember, type TestCluster } from '../support/cluster.js';
import { sandboxProcesses } from '../support/sandbox-processes.js';
import { until } from '../support/until.js';

// Issue 12, the servers: stateless, any number, behind haproxy.
// - One of them reaps (marks nodes dead), whichever holds the PostgreSQL advisory lock; killed -9,
//   PostgreSQL drops its connection and lock, and another server takes over within the lease —
//   and reaps: a node killed afterwards is declared lost.
// - A rolling restart of both servers (SIGTERM, start, one after the other) under a viewer in a
//   browser: the viewer reconnects each time through haproxy to the server that is up, and the
//   session, its sandbox and its desktop are the same all along.

const leaseMs = 4_000;
/** src/store/postgres/sql-store.ts reaperLockKey: pg_advisory_lock(bigint) shows as classid 0, objid = key. */
const reaperLockKey = 7468254;
let cluster: TestCluster;
let browser: Awaited<ReturnType<typeof launchBrowser>> | undefined;

before(async () => {
  cluster = await startCluster({
    name: 'cluster-servers',
    roles: 'split',
    servers: 2,
    nodes: 2,
    // The lease on the servers too: their reaper looks every lease/5.
    env: { PORTHOLE_NODE_LEASE_MS: String(leaseMs) },
    nodeEnv: { PORTHOLE_NODE_CAPACITY: '2' },
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await cluster?.stop();
});

/** The server whose PostgreSQL connection holds the reaper lock, by its address on the bridge. */
async function reaperHolder(): Promise<ClusterMember | null> {
  const rows = await cluster.query<{ client_addr: string | null }>(
    `SELECT a.client_addr::text AS client_addr FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = $1`,
    [reaperLockKey],
  );
  const address = rows[0]?.client_addr?.replace(/\/32$/, '');
  return address ? (cluster.memberAt(address) ?? null) : null;
}

test('kill -9 the server holding the reaper lock: another takes over within the lease, and reaps', async (t) => {
  await cluster.withLogs(async () => {
    const holder = await until('a server holds the reaper lock', reaperHolder, (m) => m !== null, 2 * leaseMs);
    assert.equal(holder!.kind, 'server', `the lock's holder is a server: ${holder!.name}`);
    const killedAt = Date.now();
    await cluster.kill9(holder!);
    const next = await until('another server holds the reaper lock', reaperHolder, (m) => m !== null && m.name !== holder!.name, 2 * leaseMs, {
      intervalMs: 50,
    });
    const takeoverMs = Date.now() - killedAt;
    assert.ok(takeoverMs <= leaseMs, `taken over after ${takeoverMs} ms (lease ${leaseMs} ms)`);

    // The new holder reaps: a node killed now is declared lost, its session failed.
    const session = await cluster.api.createSession({ userId: 'reaper' });
    const node = cluster.member(session.node!.id);
    await until(
      `session ${session.id} is up`,
      () => cluster.api.getSession(session.id),
      (s) => s.state !== 'starting',
      60_000,
    );
    const nodeKilledAt = Date.now();
    await cluster.kill9(node);
    const failed = await until(
      `session ${session.id} fails NODE_LOST`,
      () => cluster.api.getSession(session.id),
      (s) => s.state === 'failed',
      4 * leaseMs,
      {
        intervalMs: 50,
      },
    );
    assert.equal(failed.reason, 'NODE_LOST');
    const reapedMs = Date.now() - nodeKilledAt;
    assert.match(await cluster.logOf(next!), /node lost/, `${next!.name} reaped it`);
    t.diagnostic(
      `kill -9 ${holder!.name} (reaper) → ${next!.name} holds the lock after ${takeoverMs} ms (lease ${leaseMs} ms); then kill -9 ${node.name} → its session NODE_LOST after ${reapedMs} ms`,
    );

    // Back to two servers and two nodes for the next test.
    await cluster.start(holder!);
    await cluster.start(node);
    await cluster.api.endSession(session.id).catch(() => {});
  })();
});

test('rolling restart of both servers with a viewer connected: it reconnects each time, nothing is lost', async (t) => {
  await cluster.withLogs(async () => {
    const created = await cluster.api.createSession({ userId: 'rolling' });
    const session = await until(
      `session ${created.id} is up`,
      () => cluster.api.getSession(created.id),
      (s) => s.state !== 'starting',
      60_000,
    );
    assert.ok(session.state === 'ready' || session.state === 'authenticating', `${session.state}: ${session.detail}`);
    // The desktop's lasting processes (the agent, Xvnc): Chromium's helpers come and go by themselves.
    const desktop = async () =>
      (await sandboxProcesses(session.sandboxId!))
        .filter((p) => p.comm === 'node' || p.comm === 'Xvnc')
        .map((p) => `${p.comm} ${p.pid}:${p.startTime}`)
        .sort();
    const desktopBefore = await desktop();
    assert.equal(desktopBefore.length, 2, `the agent and Xvnc: ${desktopBefore.join(', ')}`);

    // The viewer page through haproxy's balanced frontend: it talks to whichever server is up.
    const page = await dashboardVia(cluster, cluster.servers[0]!, browser!.browser);
    try {
      const { viewerUrl } = await cluster.apiVia(cluster.servers[0]!).createTicket(session.id);
      await page.goto(viewerUrl);
      await page.waitForSelector('body[data-phase=connected]', { timeout: 30_000 });
      // Every phase the viewer goes through from here, with the close codes it saw.
      await page.evaluate(() => {
        const seen: string[] = [];
        (window as any).seenPhases = seen;
        const push = (entry: string) => {
          if (seen.at(-1) !== entry) seen.push(entry);
        };
        // Each change's old value too: changes that land in one batch (a fast reconnect on a busy
        // machine) would otherwise show only where they ended.
        new MutationObserver((records) => {
          for (const record of records) if (record.attributeName === 'data-phase' && record.oldValue) push(record.oldValue);
          const { phase, closeCode } = document.body.dataset;
          push(`${phase}${phase === 'connected' ? '' : ` ${closeCode ?? ''}`}`);
        }).observe(document.body, { attributes: true, attributeFilter: ['data-phase', 'data-close-code'], attributeOldValue: true });
      });
      const timings: string[] = [];
      for (const server of cluster.servers) {
        const at = Date.now();
        await cluster.restart(server);
        // Closed (4503, or the other server's relay never went away) and connected again.
        await page.waitForSelector('body[data-phase=connected]', { timeout: 30_000 });
        timings.push(`${server.name} restarted in ${Date.now() - at} ms, viewer connected`);
      }
      // Its server was one of the two, so the viewer was closed (4503) and connected again. When it
      // was the second, the close may still be on its way when that server is back: wait for it.
      await page
        .waitForFunction(() => ((window as any).seenPhases as string[]).some((p) => p !== 'connected') && document.body.dataset.phase === 'connected', null, {
          timeout: 30_000,
        })
        .catch(() => {});
      const phases = await page.evaluate(() => (window as any).seenPhases as string[]);
      assert.ok(
        phases.some((p) => p !== 'connected') && phases.at(-1) === 'connected',
        `the viewer was closed by the restart of its server and reconnected: ${phases.join(' → ')}`,
      );
      timings.push(`viewer phases: ${phases.join(' → ')}`);
      const after = await cluster.api.getSession(session.id);
      assert.ok(after.state === 'ready' || after.state === 'authenticating', `still live: ${after.state} (${after.reason}: ${after.detail})`);
      assert.equal(after.sandboxId, session.sandboxId, 'the same sandbox');
      assert.deepEqual(await desktop(), desktopBefore, 'the same agent and Xvnc: the desktop was never restarted');
      const { events } = await cluster.api.listEvents(session.id);
      assert.deepEqual(
        events.filter((e) => e.to === 'failed' || e.to === 'ended'),
        [],
        'never failed nor ended',
      );
      t.diagnostic(timings.join('; '));
    } finally {
      await page.context().close();
    }
    await cluster.api.endSession(session.id);
  })();
});
