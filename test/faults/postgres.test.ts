import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { isErrorCode } from '../../src/protocol/errors.js';
import type { SessionId } from '../../src/protocol/ids.js';
import { testApiKey } from '../support/server.js';
import { assertNothingLeft, freshViewerUrl, watchedSession } from '../support/faults.js';
import { startPostgres, type TestPostgres } from '../support/postgres.js';
import { until, untilDefined } from '../support/until.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { closeViewer, connectViewer, expectFramebufferUpdate, nextClose, openViewerSocket } from '../support/ws.js';

// PostgreSQL stops under a running server (DATABASE_URL) and comes back. Meanwhile every API call
// that needs the store answers 503 STORE_UNAVAILABLE at once (no hang, no 500, no crash), the
// running viewer's RFB stream is untouched (the relay needs no store once piped), and nothing is
// ended by a reconciler that cannot read the store. Afterwards requests work again and the
// session and its timeline are as they were.

const reconcileIntervalMs = 5_000;
/** The pool's connect timeout is 3 s; a refused connection must not take even that. */
const quickMs = 3_500;
let pg: TestPostgres;
let isPgDown = false;
let t: TestServer;

before(async () => {
  pg = await startPostgres();
  t = await startTestServer('faults-postgres', { DATABASE_URL: pg.url });
});
after(async () => {
  if (isPgDown) await pg.start(); // so that stop() can end the sessions
  await t?.stop();
  await pg?.stop();
});

async function call(method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown; ms: number }> {
  const started = Date.now();
  const headers: Record<string, string> = { authorization: `Bearer ${testApiKey}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(`${t.server.url}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  return { status: response.status, json: text ? JSON.parse(text) : null, ms: Date.now() - started };
}

test('PostgreSQL stopped and restarted: 503 STORE_UNAVAILABLE quickly, the viewer keeps its stream, everything intact afterwards', async (tc) => {
  const { session, sandboxId, viewer } = await watchedSession(t);
  let isViewerClosed = false;
  void viewer.closed.then(() => (isViewerClosed = true));
  const eventsBefore = (await t.api.listEvents(session.id)).events;
  const sessionsBefore = (await t.api.listSessions()).sessions;
  const before = await t.api.getSession(session.id);

  const failedPasses = async () => (await readFile(t.logFile, 'utf8')).split('\n').filter((line) => line.includes('"msg":"reconcile failed')).length;
  const failedBefore = await failedPasses();
  const stoppingAt = Date.now();
  await pg.shutdown();
  isPgDown = true;
  const shutdownMs = Date.now() - stoppingAt;

  const calls: Array<[string, string, unknown?]> = [
    ['GET', `/v1/sessions/${session.id}`],
    ['GET', '/v1/sessions'],
    ['GET', `/v1/sessions/${session.id}/events`],
    ['POST', `/v1/sessions/${session.id}/ticket`],
    ['POST', '/v1/sessions', {}],
    ['DELETE', `/v1/sessions/${session.id}`],
  ];
  const latencies: number[] = [];
  const checkOutage = async () => {
    for (const [method, path, body] of calls) {
      const { status, json, ms } = await call(method, path, body);
      const error = (json as { error?: { code?: string; requestId?: string } } | null)?.error;
      assert.equal(status, 503, `${method} ${path} → ${status} ${JSON.stringify(json)}`);
      assert.equal(error?.code, 'STORE_UNAVAILABLE', `${method} ${path}`);
      assert.ok(error?.requestId, 'the answer names its request id');
      assert.ok(ms < quickMs, `${method} ${path} answered in ${ms} ms`);
      latencies.push(ms);
    }
    const health = await fetch(`${t.server.url}/healthz`);
    assert.equal(health.status, 200, '/healthz needs no store');
    // A new viewer: its ticket verifies without the store, the session lookup cannot be done.
    const late = await openViewerSocket(freshViewerUrl(t, session.id));
    assert.ok('ws' in late, 'refused' in late ? JSON.stringify(late.refused) : '');
    const lateClose = await nextClose(late.ws, quickMs);
    assert.equal(isErrorCode(lateClose.reason), true, `close ${lateClose.code} ${lateClose.reason}`);
    assert.deepEqual(lateClose, { code: 4503, reason: 'STORE_UNAVAILABLE' });
    // The viewer that was connected still gets framebuffer updates.
    await expectFramebufferUpdate(viewer);
    assert.equal(isViewerClosed, false, 'the running viewer stays connected');
  };
  await checkOutage();
  const firstRoundMs = Date.now() - stoppingAt;
  // Across a reconcile tick, which cannot read the store either: nothing is ended meanwhile.
  await until('a reconcile pass fails to read the store (server log)', failedPasses, (n) => n > failedBefore, reconcileIntervalMs + 5_000, { intervalMs: 100 });
  await checkOutage();
  const outageMs = Date.now() - stoppingAt;

  const startingAt = Date.now();
  await pg.start();
  isPgDown = false;
  const startMs = Date.now() - startingAt;
  await untilDefined('the API answers again', async () => ((await call('GET', `/v1/sessions/${session.id}`)).status === 200 ? true : undefined), 10_000, {
    intervalMs: 50,
    canProbeFail: true,
  });
  const recoveredMs = Date.now() - startingAt;

  const afterwards = await t.api.getSession(session.id);
  assert.deepEqual(afterwards, before, 'the session is exactly as it was');
  assert.equal(afterwards.state, 'authenticating');
  const eventsAfter = (await t.api.listEvents(session.id)).events;
  assert.deepEqual(eventsAfter, eventsBefore, 'its timeline is exactly as it was');
  assert.deepEqual(
    (await t.api.listSessions()).sessions.map((s) => s.id),
    sessionsBefore.map((s) => s.id),
    'the POST made during the outage created nothing',
  );
  const ticket = await t.api.createTicket(session.id);
  const again = await connectViewer(`${t.server.url.replace(/^http/, 'ws')}/v1/sessions/${session.id}/vnc?ticket=${encodeURIComponent(ticket.ticket)}`);
  await expectFramebufferUpdate(again);
  assert.equal(isViewerClosed, false);
  tc.diagnostic(
    `PostgreSQL fast shutdown took ${shutdownMs} ms; ${latencies.length} API calls during the ${outageMs} ms outage all 503 STORE_UNAVAILABLE, slowest ${Math.max(...latencies)} ms, median ${latencies.sort((a, b) => a - b)[latencies.length >> 1]} ms (first round done ${firstRoundMs} ms after the stop); PostgreSQL back in ${startMs} ms, API answering ${recoveredMs} ms after the start began; viewer stayed connected throughout`,
  );

  await closeViewer(again);
  await closeViewer(viewer);
  await t.api.endSession(session.id);
  assert.equal((await t.api.getSession(session.id as SessionId)).state, 'ended');
  await assertNothingLeft(t, sandboxId);
});
