// Every route of the API, called through app.inject() on the route table of a real server (real
// store, driver, sandbox and demo issuer), and every answer held to the schema its route declares
// for that status: a handler that drifts from its schema (a field renamed, one added, a status not
// documented) fails here, not in a client. The OpenAPI document is generated from the same schemas.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import type { SessionId } from '../../src/protocol/ids.js';
import { buildApp } from '../../src/server/http/app.js';
import { TrustedOrigins } from '../../src/server/http/origin.js';
import type { RouteDef } from '../../src/server/http/routes.js';
import { Secret } from '../../src/server/secret.js';
import { hashAgentToken } from '../../src/server/sessions/agent-token.js';
import { createSessionDiagnosis } from '../../src/server/sessions/diagnosis.js';
import { EventFeed } from '../../src/server/sessions/event-feed.js';
import { demoSignIn } from '../support/demo-sign-in.js';
import { startTestServer, testApiKey, type TestServer } from '../support/server.js';
import { until } from '../support/until.js';

let t: TestServer;
let app: Awaited<ReturnType<typeof buildApp>>['app'];
let routes: RouteDef[];
/** operationId → the statuses it answered with in this file. */
const answered = new Map<string, Set<number>>();

before(async () => {
  t = await startTestServer('route-responses');
  const { config, store, driver, tickets, logger } = t.server;
  const url = new URL(t.server.url);
  const origins = new TrustedOrigins(config.publicUrl, config.allowedOrigins);
  origins.listening({ address: url.hostname, family: 'IPv4', port: Number(url.port) } satisfies AddressInfo);
  const diagnose = createSessionDiagnosis({ store, driver, tickets, logger, node: t.server.node });
  ({ app, routes } = await buildApp({
    logger,
    store,
    sessions: t.server.sessions,
    apiKey: config.apiKey,
    tickets,
    ticketTtlMs: config.ticketTtlMs,
    origins,
    bodyLimitBytes: config.bodyLimitBytes,
    loginToken: new Secret(randomBytes(18).toString('base64url')),
    metrics: t.server.metrics,
    vault: t.server.vault,
    refresher: t.server.refresher,
    runs: t.server.runs,
    // An injected request has no listener to dial back: the relay hop goes to the real server's.
    diagnose: (id) => diagnose(id, { serverUrl: t.server.url }),
    feed: new EventFeed(),
    // The real server's own answer (its node's standing lives there).
    readiness: async () => (await fetch(`${t.server.url}/readyz`)).json(),
  }));
});
after(async () => {
  await app?.close();
  await t?.stop();
});

type Caller = 'api-key' | null | { agent: string } | { ticket: string } | { key: string };

/** Calls one route by its operationId and checks the answer against the schema declared for its status. */
async function call(
  operationId: string,
  init: { id?: string; keyId?: string; query?: string; body?: unknown; as?: Caller } = {},
): Promise<{ status: number; body: any }> {
  const route = routes.find((r) => r.operationId === operationId) ?? assert.fail(`no route ${operationId}`);
  const headers: Record<string, string> = {};
  const as = init.as === undefined ? 'api-key' : init.as;
  if (as === 'api-key') headers.authorization = `Bearer ${testApiKey}`;
  else if (as && 'agent' in as) headers.authorization = `Bearer ${as.agent}`;
  else if (as && 'key' in as) headers.authorization = `Bearer ${as.key}`;
  else if (as) headers.authorization = `Ticket ${as.ticket}`;
  if (init.body !== undefined) headers['content-type'] = 'application/json';
  const response = await app.inject({
    method: route.method,
    url: route.url.replace(':id', init.id ?? '').replace(':keyId', init.keyId ?? '') + (init.query ?? ''),
    headers,
    ...(init.body === undefined ? {} : { payload: JSON.stringify(init.body) }),
  });
  const what = `${route.method} ${route.url} (${operationId}) answered ${response.statusCode}`;
  const schema = route.responses[response.statusCode];
  assert.ok(schema, `${what}, a status its route does not declare: ${response.body}`);
  const body: unknown = response.body === '' ? null : response.json();
  const parsed = schema.safeParse(body);
  assert.ok(parsed.success, `${what} with a body its schema refuses: ${parsed.error?.message}\n${response.body}`);
  assert.deepEqual(parsed.data, body, `${what} with fields its schema does not declare`);
  let statuses = answered.get(operationId);
  if (!statuses) {
    statuses = new Set();
    answered.set(operationId, statuses);
  }
  statuses.add(response.statusCode);
  return { status: response.statusCode, body };
}

const unknownId = 'ses_00000000000000000000';
let sessionId: SessionId;
let agentToken: string;

test('health and the session routes answer as declared, errors included', async () => {
  assert.equal((await call('health', { as: null })).status, 200);
  assert.equal((await call('createSession', { body: { provider: 'nope' } })).status, 400);
  assert.equal((await call('createSession', { body: {}, as: null })).status, 401);
  const created = await call('createSession', { body: { provider: 'demo' } });
  assert.equal(created.status, 201);
  sessionId = created.body.id;
  await t.waitForState(sessionId, ['ready', 'authenticating']);

  assert.equal((await call('listSessions')).status, 200);
  assert.equal((await call('listSessions', { query: '?state=ready&limit=5' })).status, 200);
  assert.equal((await call('listSessions', { query: '?limit=-4' })).status, 400);
  assert.equal((await call('getSession', { id: sessionId })).status, 200);
  assert.equal((await call('getSession', { id: unknownId })).status, 404);
  assert.equal((await call('getSession', { id: 'not-an-id' })).status, 400);
  assert.equal((await call('listSessionEvents', { id: sessionId })).status, 200);
  assert.equal((await call('listSessionEvents', { id: sessionId, query: '?after=1&limit=2' })).status, 200);
  assert.equal((await call('listSessionEvents', { id: unknownId })).status, 404);
});

test('a viewer ticket, and what the ticket may do', async () => {
  const issued = await call('createViewerTicket', { id: sessionId });
  assert.equal(issued.status, 201);
  const viewer = { ticket: issued.body.ticket as string };
  assert.equal((await call('getSession', { id: sessionId, as: viewer })).status, 200);
  assert.equal((await call('createViewerTicket', { id: sessionId, as: viewer })).status, 201, 'a viewer renews its ticket');
  assert.equal((await call('createViewerTicket', { id: unknownId })).status, 404);
});

test('the diagnosis', async () => {
  assert.equal((await call('diagnoseSession', { id: sessionId })).status, 200);
  assert.equal((await call('diagnoseSession', { id: unknownId })).status, 404);
});

test('the agent channel: an event, then the credential delivered twice', async () => {
  agentToken = randomBytes(32).toString('base64url');
  await t.server.store.setAgentTokenHash(sessionId, hashAgentToken(agentToken));
  const agent = { agent: agentToken };
  assert.equal((await call('agentEvent', { id: sessionId, body: { type: 'login.waiting', details: { waitingFor: 'the CLI' } }, as: agent })).status, 204);
  assert.equal((await call('agentEvent', { id: sessionId, body: { type: 'login.waiting' }, as: { agent: 'wrong' } })).status, 401);
  assert.equal((await call('agentEvent', { id: sessionId, body: { type: 'no.such.event' }, as: agent })).status, 400);

  const content = JSON.stringify(await demoSignIn(t.server.demoOidc!.issuer));
  const delivery = { provider: 'demo', file: 'credentials.json', content, expiresAt: null, account: null };
  assert.equal((await call('agentDeliverCredentials', { id: sessionId, body: { ...delivery, content: content.slice(0, 40) }, as: agent })).status, 422);
  assert.equal((await call('agentDeliverCredentials', { id: sessionId, body: delivery, as: agent })).status, 201);
  assert.equal((await call('agentDeliverCredentials', { id: sessionId, body: delivery, as: agent })).status, 200, 'idempotent');
  assert.equal((await call('agentEvent', { id: sessionId, body: { type: 'login.waiting' }, as: agent })).status, 410, 'the session is over');
});

test('app keys: made by an admin, each sees only its own sessions; the webhook log; login links', async () => {
  const one = await call('createKey', { body: { name: 'app one', webhookUrl: 'http://127.0.0.1:9/hook' } });
  assert.equal(one.status, 201);
  assert.match(one.body.key, /^ph_/);
  assert.match(one.body.webhookSecret, /^whsec_/);
  assert.equal(one.body.admin, false);
  const two = await call('createKey', { body: { name: 'app two' } });
  assert.equal(two.body.webhookSecret, null);
  assert.equal((await call('createKey', { body: { name: '' } })).status, 400);
  assert.equal((await call('createKey', { body: { name: 'x', webhookUrl: 'ftp://127.0.0.1/' } })).status, 400);

  const asOne = { key: one.body.key as string };
  assert.equal((await call('createKey', { body: { name: 'mine' }, as: asOne })).status, 403);
  assert.equal((await call('listKeys', { as: asOne })).status, 403);
  assert.equal((await call('getSession', { id: sessionId, as: asOne })).status, 403, 'the admin key’s session');
  assert.equal((await call('getSessionCredentials', { id: sessionId, as: asOne })).status, 403);
  assert.deepEqual((await call('listSessions', { as: asOne })).body.sessions, []);
  assert.equal((await call('listKeys')).status, 200);
  assert.equal((await call('listWebhookDeliveries')).status, 200);
  assert.equal((await call('listWebhookDeliveries', { query: `?sessionId=${sessionId}`, as: asOne })).status, 200);
  assert.equal((await call('createLoginLink')).status, 201);
  assert.equal((await call('createLoginLink', { as: asOne })).status, 403);

  assert.equal((await call('revokeKey', { keyId: two.body.id })).status, 200);
  assert.equal((await call('revokeKey', { keyId: 'key_000000000000' })).status, 404);
  assert.equal((await call('listSessions', { as: { key: two.body.key } })).status, 401, 'revoked');
});

test('the credential, the key rotation, and ending the session', async () => {
  assert.equal((await call('getSessionCredentials', { id: sessionId })).status, 200);
  assert.equal((await call('getSessionCredentials', { id: unknownId })).status, 404);
  assert.equal((await call('getSessionAccessToken', { id: sessionId })).status, 200);
  assert.equal((await call('getSessionAccessToken', { id: unknownId })).status, 404);
  const run = await call('createRun', { body: { sessionId, args: ['whoami'] } });
  assert.equal(run.status, 201);
  assert.equal((await call('createRun', { body: { sessionId, args: ['x'], prompt: 'y' } })).status, 400);
  assert.equal((await call('createRun', { body: { sessionId: unknownId, args: [] } })).status, 404);
  assert.equal((await call('getRun', { id: run.body.id })).status, 200);
  assert.equal((await call('getRun', { id: 'run_00000000000000000000' })).status, 404);
  assert.equal((await call('listRuns')).status, 200);
  assert.equal((await call('listRunEvents', { id: run.body.id })).status, 200);
  await until(
    'the run to end',
    () => t.server.store.getRun(run.body.id),
    (r) => r !== null && ['succeeded', 'failed', 'timed_out'].includes(r.state),
    120_000,
  );
  assert.equal((await call('cancelRun', { id: run.body.id })).status, 200, 'a run that is over is returned as it is');
  assert.equal((await call('cancelRun', { id: 'run_00000000000000000000' })).status, 404);
  assert.equal((await call('rotateMasterKey')).status, 200);
  assert.equal((await call('endSession', { id: sessionId })).status, 200);
  assert.equal((await call('endSession', { id: unknownId })).status, 404);
  const again = await call('signInAgain', { id: sessionId });
  assert.equal(again.status, 201);
  assert.equal(again.body.provider, 'demo');
  assert.equal((await call('signInAgain', { id: unknownId })).status, 404);
  assert.equal((await call('endSession', { id: again.body.id })).status, 200);
});

test('readiness, and the nodes: listed, drained, undrained; an unknown one is 404', async () => {
  const ready = await call('readiness', { as: null });
  assert.equal(ready.status, 200);
  assert.equal(ready.body.role, 'all-in-one');
  const nodeId = t.server.node.id;
  assert.equal(ready.body.node.id, nodeId);
  const listed = await call('listNodes');
  assert.equal(listed.status, 200);
  assert.deepEqual(
    listed.body.nodes.map((n: { id: string; state: string }) => [n.id, n.state]),
    [[nodeId, 'active']],
  );
  assert.equal((await call('listNodes', { as: null })).status, 401);
  assert.equal((await call('drainNode', { id: nodeId })).body.state, 'draining');
  assert.equal((await call('undrainNode', { id: nodeId })).body.state, 'active');
  assert.equal((await call('drainNode', { id: 'no-such-node' })).status, 404);
  assert.equal((await call('undrainNode', { id: 'no-such-node' })).status, 404);
});

test('every route of the API was called and answered with a success it declares', () => {
  // A stream that never ends (the firehose) cannot be injected; test/server/live-events.test.ts holds it.
  const missed = routes
    .filter((route) => route.eventStream !== 'only')
    .filter((route) => ![...(answered.get(route.operationId) ?? [])].some((status) => status >= 200 && status < 300))
    .map((route) => `${route.method} ${route.url} (${route.operationId})`);
  assert.deepEqual(missed, []);
});
