import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ApiClient } from '../../src/cli/api-client.js';
import { diagnosisHops, sessionDiagnosisSchema, type SessionDiagnosis } from '../../src/protocol/diagnosis.js';
import { closeCodeOf } from '../../src/protocol/errors.js';
import type { SessionId } from '../../src/protocol/ids.js';
import type { Session } from '../../src/protocol/session.js';
import { loadConfig } from '../../src/server/config.js';
import { createLogger } from '../../src/server/logger.js';
import { startServer, type RunningServer } from '../../src/server/main.js';
import { clusterKeyFrom } from '../../src/server/cluster/cluster-key.js';
import { createNodeClient } from '../../src/server/cluster/node-client.js';
import { relayWalkedByServer } from '../../src/server/sessions/diagnosis.js';
import { startPostgres, type TestPostgres } from '../support/postgres.js';
import { testApiKey, testEnv, testOutputDir } from '../support/server.js';
import { showDiagnosis } from '../support/faults.js';
import { until } from '../support/until.js';
import { launchBrowser } from '../support/browser.js';
import { closeViewer, connectViewer, openViewerSocket, nextClose, viewerSocketUrl } from '../support/ws.js';

// The two split roles in this process, on 127.0.0.1, over a real PostgreSQL: one `porthole node`
// (sandboxes) and one `porthole server` (API, edge relay, reaper). A session created through the
// server lands on the node; a viewer and the diagnosis reach it through the server's edge relay
// and the internal hop; once the node goes (closed without deregistering: from the catalog's view,
// a host that stopped answering) the diagnosis names the node hop — NODE_UNREACHABLE while its
// lease runs, NODE_LOST once the reaper declared it lost — and a viewer gets 4424 NODE_LOST.

const leaseMs = 4_000;
const nodeId = 'roles-node';

let pg: TestPostgres;
let server: RunningServer;
let node: RunningServer | null = null;
/** Set once the node is closed without ending its sandboxes: the same node started again cleans them up. */
let isNodeGone = false;
let api: ApiClient;
let nodeUrl = '';
const dirs: string[] = [];
const logs: WriteStream[] = [];
let common: Record<string, string>;

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve, reject) => probe.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/** One role of the cluster, started in this process with its own data directory and log. */
async function startRole(role: 'node' | 'server', env: Record<string, string>): Promise<RunningServer> {
  const dataDir = env.PORTHOLE_DATA_DIR ?? (await mkdtemp(join(tmpdir(), 'porthole-test-')));
  if (!dirs.includes(dataDir)) dirs.push(dataDir);
  await chmod(dataDir, 0o711);
  const out = testOutputDir('cluster-roles');
  await mkdir(out, { recursive: true });
  const log = createWriteStream(join(out, `${role}.log`), { flags: 'a' });
  logs.push(log);
  const config = loadConfig({ ...testEnv(dataDir), ...common, ...env }, role);
  return startServer(config, { logger: createLogger(config.logLevel, log) });
}

/** The node, on the same data directory, port and id each time. */
function startNode(): Promise<RunningServer> {
  return startRole('node', { ...(dirs[0] ? { PORTHOLE_DATA_DIR: dirs[0] } : {}), PORTHOLE_PORT: new URL(nodeUrl).port, PORTHOLE_NODE_URL: nodeUrl });
}

async function diagnosis(id: string): Promise<SessionDiagnosis> {
  const response = await fetch(`${server.url}/v1/sessions/${id}/diagnosis`, { headers: { authorization: `Bearer ${testApiKey}` } });
  const body: unknown = await response.json();
  assert.equal(response.status, 200, JSON.stringify(body));
  return sessionDiagnosisSchema.parse(body);
}

const hopOf = (d: SessionDiagnosis, name: string) => d.hops.find((h) => h.hop === name)!;

async function viewerUrl(id: string): Promise<string> {
  const { ticket } = await api.createTicket(id);
  return viewerSocketUrl(server.url, id, ticket);
}

before(async () => {
  pg = await startPostgres();
  common = {
    DATABASE_URL: pg.url,
    PORTHOLE_CLUSTER_KEY: randomBytes(32).toString('base64'),
    PORTHOLE_MASTER_KEY: randomBytes(32).toString('base64'),
    PORTHOLE_DEMO_PROVIDER: 'false',
    PORTHOLE_NODE_LEASE_MS: String(leaseMs),
  };
  const port = await freePort();
  nodeUrl = `http://127.0.0.1:${port}`;
  common.PORTHOLE_NODE_ID = nodeId;
  node = await startNode();
  server = await startRole('server', {});
  api = new ApiClient(server.url, testApiKey);
});

after(async () => {
  try {
    // A test that failed between closing the node and starting it again left its sandboxes running.
    if (isNodeGone && node === null) node = await startNode();
    for (const sandbox of (await node?.driver.list()) ?? []) await node?.driver.destroy(sandbox.id);
    await node?.close();
    await server?.close();
  } finally {
    await pg?.stop();
    await Promise.all(logs.map((log) => new Promise((resolve) => log.end(resolve))));
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  }
});

let session: Session;

test('a session created through the server lands on the node and becomes ready; a viewer gets the RFB banner through the edge', async () => {
  const created = await api.createSession({});
  assert.equal(created.node?.id, nodeId);
  session = await until(
    `session ${created.id} ready`,
    () => api.getSession(created.id),
    (s) => s.state !== 'starting',
    60_000,
    { intervalMs: 100 },
  );
  assert.equal(session.state, 'ready', session.detail ?? '');
  const viewer = await connectViewer(await viewerUrl(session.id));
  assert.ok(viewer.size.width > 0, 'ServerInit through server → node relay → VNC');
  await closeViewer(viewer);
});

test('the diagnosis through the server: every hop ok, the node hop naming the host and its generation', async () => {
  const d = await diagnosis(session.id);
  assert.deepEqual(
    d.hops.map((h) => [h.hop, h.result]),
    diagnosisHops.map((h) => [h, 'ok']),
    showDiagnosis(d),
  );
  assert.equal(d.firstFailure, null);
  assert.match(
    hopOf(d, 'node').cause,
    new RegExp(`^${nodeId} \\(${nodeUrl}\\), generation 1, active, heartbeat [\\d.]+ s ago, lease 4 s; its walk answered in \\d+ ms`),
  );
  assert.equal(hopOf(d, 'vnc').cause, 'banner RFB 003.008, security None accepted');
  // The relay hop is the browser's path: this server's edge relay, then the node's relay.
  assert.match(
    hopOf(d, 'relay').cause,
    new RegExp(`through ws://127\\.0\\.0\\.1:\\d+/v1/sessions/${session.id}/vnc \\(edge relay → node relay on ${nodeId}\\)$`),
  );
  assert.equal((await api.getSession(session.id)).state, 'ready', 'the probes are not viewers');

  // What the node itself answered over the internal hop: its own walk, the relay hop left to the server.
  const nodes = createNodeClient(clusterKeyFrom(Buffer.from(common.PORTHOLE_CLUSTER_KEY!, 'base64')));
  const record = (await server.store.getNode(nodeId))!;
  const own = sessionDiagnosisSchema.parse(await nodes.diagnose(record, session.id as SessionId, 10_000));
  assert.deepEqual(
    own.hops.map((h) => [h.hop, h.result]),
    diagnosisHops.map((h) => [h, h === 'relay' ? 'skipped' : 'ok']),
    showDiagnosis(own),
  );
  assert.match(hopOf(own, 'node').cause, new RegExp(`^${nodeId} \\(${nodeUrl}\\) \\(this process\\), generation 1, active, `));
  assert.equal(hopOf(own, 'relay').cause, relayWalkedByServer);
  assert.deepEqual(
    hopOf(d, 'agent'),
    { ...hopOf(own, 'agent'), ms: hopOf(d, 'agent').ms, details: hopOf(d, 'agent').details },
    'the server passes the node’s hops on',
  );
});

test('the node goes without a word: NODE_UNREACHABLE while its lease runs, then NODE_LOST; viewers get 4424 NODE_LOST', async (t) => {
  const gone = node!;
  const sandboxes = await gone.driver.list();
  const viewer = await connectViewer(await viewerUrl(session.id));
  // And the viewer page in a real browser, through the server: what the person reads.
  const chromium = await launchBrowser();
  t.after(() => chromium.close());
  const page = await chromium.browser.newPage();
  const consoleErrors: string[] = [];
  page.on('console', (message) => message.type() === 'error' && consoleErrors.push(message.text()));
  // The dashboard names the host each session runs on.
  await page.goto(server.loginUrl);
  const nodeCell = page.locator(`tr[data-session-id="${session.id}"] td[data-label=Session] .node`);
  await nodeCell.waitFor({ timeout: 10_000 });
  assert.equal(await nodeCell.textContent(), nodeId);
  assert.equal(await nodeCell.getAttribute('title'), `Runs on the porthole node ${nodeId}, generation 1`);
  await page.goto((await api.createTicket(session.id)).viewerUrl);
  await page.waitForSelector('body[data-phase=connected]', { timeout: 30_000 });
  // Every sentence the page says from here on.
  await page.evaluate(() => {
    const said: string[] = [];
    (window as unknown as { said: string[] }).said = said;
    const status = document.querySelector('#status')!;
    new MutationObserver(() => said.push(status.textContent ?? '')).observe(status, { childList: true, characterData: true, subtree: true });
  });
  // Closed without deregistering: its row stays active and its heartbeat ages, as for a host that died.
  const closedAt = performance.now();
  isNodeGone = true;
  await gone.close();
  node = null;
  // The node's relay said why as it went; the edge passes that on.
  const first = await viewer.closed;
  assert.deepEqual([first.code, first.reason], [closeCodeOf('SERVER_SHUTTING_DOWN'), 'SERVER_SHUTTING_DOWN']);

  const early = await diagnosis(session.id);
  assert.notEqual(early.state, 'failed', `the reaper fired within ${Math.round(performance.now() - closedAt)} ms of a ${leaseMs} ms lease`);
  assert.equal(early.firstFailure?.hop, 'node', showDiagnosis(early));
  assert.equal(early.firstFailure?.code, 'NODE_UNREACHABLE');
  assert.match(early.firstFailure?.cause ?? '', new RegExp(`^the host ${nodeId} \\(${nodeUrl}\\) does not answer: ECONNREFUSED$`));
  assert.equal(hopOf(early, 'store').result, 'ok');
  for (const name of ['driver', 'agent', 'vnc', 'relay']) {
    assert.deepEqual([hopOf(early, name).result, hopOf(early, name).cause], ['skipped', 'not checked: the node hop failed']);
  }
  // A viewer meanwhile: the edge cannot reach the node, and says so (the viewer comes back).
  const opened = await openViewerSocket(await viewerUrl(session.id));
  assert.ok('ws' in opened);
  const unreachable = await nextClose(opened.ws);
  assert.deepEqual([unreachable.code, unreachable.reason], [closeCodeOf('NODE_UNREACHABLE'), 'NODE_UNREACHABLE']);

  const failed = await until(
    'the reaper fails the session',
    () => api.getSession(session.id),
    (s) => s.state === 'failed',
    leaseMs * 3,
    { intervalMs: 100 },
  );
  const lostMs = Math.round(performance.now() - closedAt);
  assert.equal(failed.reason, 'NODE_LOST');
  assert.match(failed.detail ?? '', new RegExp(`^The host ${nodeId} \\(${nodeUrl}\\) stopped answering: no heartbeat for [\\d.]+ s, past its 4 s lease\\.`));

  const late = await diagnosis(session.id);
  assert.equal(late.state, 'failed');
  assert.equal(late.firstFailure?.hop, 'node', showDiagnosis(late));
  assert.equal(late.firstFailure?.code, 'NODE_LOST');
  assert.match(late.firstFailure?.cause ?? '', new RegExp(`^the host ${nodeId} \\(${nodeUrl}\\) is dead: no heartbeat for [\\d.]+ s, past its 4 s lease`));
  const lostViewer = await openViewerSocket(await viewerUrl(session.id));
  assert.ok('ws' in lostViewer);
  const lost = await nextClose(lostViewer.ws);
  assert.deepEqual([lost.code, lost.reason], [4424, 'NODE_LOST']);
  process.stderr.write(`node closed → session failed NODE_LOST after ${lostMs} ms (lease ${leaseMs} ms)\n`);

  // The page: told the machine is not answering while it tried again, then the final sentence naming it.
  await page.waitForSelector('body[data-phase=failed]', { timeout: 30_000 });
  assert.deepEqual(await page.evaluate(() => [document.body.dataset.closeCode, document.body.dataset.closeReason]), ['4424', 'NODE_LOST']);
  assert.equal(
    await page.textContent('#status'),
    `The machine running this desktop (${nodeId}) stopped answering, and the desktop was lost with it. Start again to sign in.`,
  );
  assert.match(
    (await page.textContent('#operator-detail')) ?? '',
    new RegExp(`^NODE_LOST: .*The host ${nodeId} \\(${nodeUrl}\\) stopped answering: no heartbeat for`),
  );
  const said = await page.evaluate(() => (window as unknown as { said: string[] }).said);
  assert.ok(
    said.some((sentence) => new RegExp(`^The machine running this desktop \\(${nodeId}\\) is not answering\\. Trying again in \\d+ s…$`).test(sentence)),
    `while the host's lease ran, the page said it was not answering: ${[...new Set(said)].join(' | ')}`,
  );
  // noVNC logs each refused connection ("Failed when connecting: Connection closed (code: 4502, …)"); nothing else may be an error (a refused phase move is one).
  assert.deepEqual(
    consoleErrors.filter((e) => !/^Failed when connecting: Connection closed \(code: (4502|4424|4503),/.test(e)),
    [],
  );

  // The same host back: the reaper moved it to generation 2, and a dead node registers as a new one;
  // its start-up reconcile ends the sandboxes its lost generation left (they may hold secrets).
  node = await startNode();
  assert.equal(node.node.generation, 3);
  assert.equal(sandboxes.length, 1);
  assert.deepEqual(await node.driver.list(), [], `the lost generation's sandbox ${sandboxes[0]?.id} is gone`);
  assert.equal((await api.getSession(session.id)).state, 'failed', 'and its session stays failed');
});
