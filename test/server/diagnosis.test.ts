import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readRfbBanner } from '../../src/drivers/endpoint-probes.js';
import { sandboxesDir } from '../../src/drivers/local-layout.js';
import { sandboxProcesses } from '../../src/drivers/local/local-driver.js';
import { readProcStat } from '../../src/drivers/proc-scan.js';
import { readRecord } from '../../src/drivers/local/sandbox-record.js';
import { diagnosisHops, sessionDiagnosisSchema, type SessionDiagnosis } from '../../src/protocol/diagnosis.js';
import { AppError } from '../../src/protocol/errors.js';
import { newSessionId, type SandboxId, type SessionId } from '../../src/protocol/ids.js';
import type { Session } from '../../src/protocol/session.js';
import { version } from '../../src/protocol/version.js';
import { createSessionDiagnosis } from '../../src/server/sessions/diagnosis.js';
import { startTestServer, testApiKey, type TestServer } from '../support/server.js';
import { until } from '../support/until.js';

// The per-hop diagnosis against a real server and real sandboxes: healthy, then broken one hop at
// a time (Xvnc killed, the whole sandbox killed, the session ended). One sandbox serves the whole
// file, broken further at each step, so the file stays within a small machine's memory.

let t: TestServer;
let session: Session;
/** The diagnosis module itself, built from the server's parts as src/server/main.ts builds it. */
let diagnose: (id: string) => Promise<SessionDiagnosis>;

before(async () => {
  // No reconcile pass during the file: it would end the session whose sandbox a test kills before
  // the diagnosis gets to see the dead sandbox.
  t = await startTestServer('diagnosis', { PORTHOLE_RECONCILE_INTERVAL_MS: '600000' });
  const walk = createSessionDiagnosis({
    store: t.server.store,
    driver: t.server.driver,
    tickets: t.server.tickets,
    logger: t.server.logger,
    node: t.server.node,
  });
  diagnose = (id) => walk(id as SessionId, { serverUrl: t.server.url });
  session = await t.readySession();
});
after(() => t?.stop());

async function call(path: string, authorization: string | null = `Bearer ${testApiKey}`) {
  const response = await fetch(`${t.server.url}${path}`, { headers: authorization ? { authorization } : {} });
  const json = (await response.json()) as any;
  return { status: response.status, json };
}

const hop = (d: SessionDiagnosis, name: string) => d.hops.find((h) => h.hop === name)!;
const show = (d: SessionDiagnosis) => d.hops.map((h) => `${h.hop}: ${h.result} ${h.cause}`).join('\n');

function assertAllOk(d: SessionDiagnosis): void {
  assert.deepEqual(
    d.hops.map((h) => [h.hop, h.result]),
    diagnosisHops.map((h) => [h, 'ok']),
    show(d),
  );
  assert.equal(d.firstFailure, null);
  assert.equal(d.serverVersion, version);
  assert.match(hop(d, 'store').cause, new RegExp(`^(ready|authenticating), version \\d+, sandbox ${session.sandboxId}$`));
  // The all-in-one is its own node: the one the session is placed on, under the generation it holds.
  const self = t.server.node.fence();
  assert.equal(hop(d, 'node').cause.startsWith(`${self.nodeId} (this process), generation ${self.generation}, active, heartbeat `), true, hop(d, 'node').cause);
  assert.match(hop(d, 'node').cause, /, heartbeat \d+(\.\d)? s ago, lease 15 s$/);
  assert.deepEqual([hop(d, 'node').details.nodeId, hop(d, 'node').details.generation], [self.nodeId, self.generation]);
  assert.match(hop(d, 'driver').cause, /^running for \d+ (s|min)/);
  assert.equal(hop(d, 'agent').cause.startsWith(`healthy, version ${version}`), true, hop(d, 'agent').cause);
  assert.equal(hop(d, 'vnc').cause, 'banner RFB 003.008, security None accepted');
  assert.match(
    hop(d, 'relay').cause,
    new RegExp(`^banner RFB 003\\.008, security None accepted through ws://127\\.0\\.0\\.1:\\d+/v1/sessions/${session.id}/vnc$`),
  );
  assert.doesNotMatch(JSON.stringify(d), /vt\./, 'the relay hop’s ticket never appears in the answer');
  for (const h of d.hops) assert.ok(Number.isInteger(h.ms) && h.ms >= 0, `${h.hop}: ms`);
}

/** SIGKILLs the sandbox's processes with this comm; returns how many. */
async function killInSandbox(sandboxId: string, comm: string): Promise<number> {
  const record = await readRecord(join(sandboxesDir(t.dataDir), sandboxId));
  let killed = 0;
  for (const pid of await sandboxProcesses(sandboxId, record?.init.pidNamespace ?? null)) {
    if ((await readProcStat(pid))?.comm !== comm) continue;
    try {
      process.kill(pid, 'SIGKILL');
      killed++;
    } catch {
      // exited meanwhile
    }
  }
  return killed;
}

describe('GET /v1/sessions/:id/diagnosis', () => {
  test('with the API key: a healthy ready session has every hop ok, relay included', async () => {
    const { status, json } = await call(`/v1/sessions/${session.id}/diagnosis`);
    assert.equal(status, 200, JSON.stringify(json));
    const d = sessionDiagnosisSchema.parse(json);
    assert.equal(d.sessionId, session.id);
    assertAllOk(d);
    // The relay hop was a viewer for the length of a banner; once it left, the session is ready again.
    await t.waitForState(session.id, ['ready'], 10_000);
  });

  test('with the session’s own viewer ticket: 200', async () => {
    const { ticket } = t.server.tickets.issue(session.id as SessionId);
    const { status, json } = await call(`/v1/sessions/${session.id}/diagnosis`, `Ticket ${ticket}`);
    assert.equal(status, 200, JSON.stringify(json));
    assert.equal(json.firstFailure, null);
  });

  test('a viewer ticket of another session → 403 TICKET_WRONG_SESSION', async () => {
    const other = t.server.tickets.issue(newSessionId()).ticket;
    const { status, json } = await call(`/v1/sessions/${session.id}/diagnosis`, `Ticket ${other}`);
    assert.equal(status, 403);
    assert.equal(json.error.code, 'TICKET_WRONG_SESSION');
  });

  test('no credentials → 401; unknown id → 404 SESSION_NOT_FOUND; a malformed id → 400', async () => {
    assert.equal((await call(`/v1/sessions/${session.id}/diagnosis`, null)).status, 401);
    const unknown = await call(`/v1/sessions/${newSessionId()}/diagnosis`);
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.error.code, 'SESSION_NOT_FOUND');
    const malformed = await call('/v1/sessions/nope/diagnosis');
    assert.equal(malformed.status, 400);
    assert.equal(malformed.json.error.code, 'VALIDATION_FAILED');
  });

  test('is in the OpenAPI document, open to API keys, the dashboard and viewer tickets', async () => {
    const { json } = await call('/v1/openapi.json', null);
    const operation = json.paths['/v1/sessions/{id}/diagnosis']?.get;
    assert.ok(operation, 'documented');
    assert.equal(operation.operationId, 'diagnoseSession');
    assert.deepEqual(operation.security, [{ apiKey: [] }, { dashboardCookie: [] }, { viewerTicket: [] }]);
    assert.ok(operation.responses['200'].content['application/json'].schema.properties.firstFailure);
  });
});

describe('hop by hop, breaking one sandbox further at each step', () => {
  test('an unknown id is SESSION_NOT_FOUND, not a diagnosis', async () => {
    await assert.rejects(diagnose(newSessionId()), (error: unknown) => error instanceof AppError && error.code === 'SESSION_NOT_FOUND');
  });

  test('healthy: every hop ok', async () => {
    assertAllOk(await diagnose(session.id));
  });

  test('the relay hop is the server’s own probe, not a viewer: no state change, no viewer events', async () => {
    const own = await t.readySession();
    const d = await diagnose(own.id);
    assert.equal(d.firstFailure, null);
    assert.equal(hop(d, 'relay').result, 'ok');
    assert.equal((await t.api.getSession(own.id)).state, 'ready', 'not moved to authenticating and back');
    const { events } = await t.api.listEvents(own.id);
    assert.deepEqual(
      events.filter((e) => e.type.startsWith('viewer.')),
      [],
    );
    assert.deepEqual(
      t.server.relay.stats().filter((c) => c.sessionId === own.id),
      [],
      'the probe is gone once the walk returns',
    );
    // A probe ticket opens the relay only: the API refuses it.
    const probe = t.server.tickets.issueProbe(own.id as SessionId).ticket;
    const response = await fetch(`${t.server.url}/v1/sessions/${own.id}`, { headers: { authorization: `Ticket ${probe}` } });
    assert.equal(response.status, 401);
    await t.server.sessions.end(own.id as SessionId, 'user');
  });

  test('diagnosing again and again does not lock viewers out of the VNC server', async () => {
    // A banner-only probe counts, for TigerVNC, as a failed login: 5 of them blacklist the socket.
    for (let i = 0; i < 6; i++) assertAllOk(await diagnose(session.id));
  });

  test('banner-only probes (like every readiness check) do not lock viewers out of the VNC server', async () => {
    // TigerVNC's blacklist would refuse every client after 5 of these; the agent starts Xvnc with -UseBlacklist=0.
    const sandbox = await t.server.driver.inspect(session.sandboxId! as SandboxId);
    for (let i = 0; i < 8; i++) await readRfbBanner(sandbox!.vnc);
    assertAllOk(await diagnose(session.id));
  });

  test('Xvnc killed: the agent or the vnc hop fails and names the cause; later hops are skipped', async () => {
    const sandboxId = session.sandboxId!;
    // The agent restarts Xvnc after a short backoff: kill and look at once, again until caught.
    const tried: string[] = [];
    const caught = await until(
      'a diagnosis that sees Xvnc down (the agent or the vnc hop failing)',
      async () => {
        const killed = await killInSandbox(sandboxId, 'Xvnc');
        const d = await diagnose(session.id);
        tried.push(`killed ${killed}: ${d.firstFailure ? `${d.firstFailure.hop} ${d.firstFailure.cause}` : 'all ok'}`);
        return d;
      },
      (d) => d.firstFailure?.hop === 'agent' || d.firstFailure?.hop === 'vnc',
      15_000,
      { intervalMs: 100 },
    ).catch((error: Error) => assert.fail(`${error.message}\ntried:\n${tried.join('\n')}`));
    const failure = caught.firstFailure!;
    if (failure.hop === 'agent') {
      assert.equal(failure.code, 'AGENT_UNHEALTHY');
      // Either Xvnc itself is still down, or it is back and what it took with it (the window
      // manager, the terminal) is not yet: then the restart is named beside what is down.
      assert.match(failure.cause, /^agent reports down: (.*vnc \((signal SIGKILL|not started yet)\)|.*; restarted: (.*, )?vnc \d+× \(last signal SIGKILL\))/);
    } else {
      assert.equal(failure.code, 'SANDBOX_UNREACHABLE');
      assert.match(failure.cause, /^(ECONNREFUSED|ENOENT|ECONNRESET) on …\/sbx_[0-9a-z]+\/sockets\/vnc\.sock/);
    }
    assert.equal(hop(caught, 'store').result, 'ok');
    assert.equal(hop(caught, 'driver').result, 'ok');
    const after = caught.hops.slice(diagnosisHops.indexOf(failure.hop) + 1);
    assert.ok(after.length > 0);
    for (const h of after) assert.deepEqual([h.result, h.cause], ['skipped', `not checked: the ${failure.hop} hop failed`]);
  });

  test('the whole sandbox killed behind the server’s back: the driver hop fails with the exit', async () => {
    const sandboxId = session.sandboxId as SandboxId;
    const record = await readRecord(join(sandboxesDir(t.dataDir), sandboxId));
    assert.ok(record);
    // The namespace's init: the kernel ends every process in it, and bwrap reports how it ended.
    process.kill(record.init.pid, 'SIGKILL');
    await until(
      'the driver reports the exit',
      () => t.server.driver.inspect(sandboxId),
      (info) => info?.status === 'exited' && info.exit !== null,
      15_000,
      { intervalMs: 50 },
    );
    const d = await diagnose(session.id);
    assert.deepEqual(d.firstFailure, { hop: 'driver', code: 'SANDBOX_UNREACHABLE', cause: 'sandbox process exited with signal SIGKILL' }, show(d));
    assert.equal(hop(d, 'driver').details.exit, 'signal SIGKILL');
    assert.equal(hop(d, 'node').result, 'ok');
    for (const name of ['agent', 'vnc', 'relay'])
      assert.deepEqual([hop(d, name).result, hop(d, name).cause], ['skipped', 'not checked: the driver hop failed']);
  });

  test('an ended session: the store hop says so, every later hop is skipped with the reason', async () => {
    await t.api.endSession(session.id);
    const d = await diagnose(session.id);
    assert.equal(d.state, 'ended');
    assert.equal(d.firstFailure, null);
    assert.match(hop(d, 'store').cause, new RegExp(`^ended \\(user\\), version \\d+, sandbox ${session.sandboxId}$`));
    // The host is still walked: a session lost with its host is told by this hop.
    assert.equal(hop(d, 'node').result, 'ok', show(d));
    for (const name of ['driver', 'agent', 'vnc', 'relay'])
      assert.deepEqual([hop(d, name).result, hop(d, name).ms, hop(d, name).cause], ['skipped', 0, 'session is ended (user)']);
  });

  test('the host fenced itself and came back as a new generation: its live session failed NODE_LOST, and the node hop says why', async () => {
    const live = await t.readySession();
    const before = t.server.node.fence();
    assert.equal(live.node?.generation, before.generation);
    // What a node does once the catalog answers again after it fenced itself (membership.ts).
    await t.server.node.register(true);
    const failed = await t.waitForState(live.id, ['failed'], 5_000);
    assert.equal(failed.reason, 'NODE_LOST');
    const d = await diagnose(live.id);
    assert.equal(d.state, 'failed');
    assert.deepEqual(
      d.firstFailure,
      {
        hop: 'node',
        code: 'NODE_LOST',
        cause: `the session was placed on generation ${before.generation} of the host ${before.nodeId}, which is now generation ${before.generation + 1}: that generation's desktops are gone (the host fenced itself or was declared lost)`,
      },
      show(d),
    );
    assert.equal(hop(d, 'store').result, 'ok');
    for (const name of ['driver', 'agent', 'vnc', 'relay'])
      assert.deepEqual([hop(d, name).result, hop(d, name).cause], ['skipped', 'not checked: the node hop failed']);
  });
});
