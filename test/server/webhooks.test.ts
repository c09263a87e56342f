// Webhooks as an app receives them, from a real server to a real HTTP receiver on loopback: signed
// per Standard Webhooks (checked with the `standardwebhooks` library, not porthole's own code),
// retried while the receiver is down — across a server restart — and all delivered once it is
// back, each under one webhook-id; a key's own webhook gets its own sessions' only; a receiver that
// never answers is given up after the schedule, with the reason in the delivery log.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { createTestDataDir, startTestServerIn, type RestartableTestServer } from '../support/restartable-server.js';
import { testApiKey } from '../support/server.js';
import { until } from '../support/until.js';

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

const secretOld = `whsec_${randomBytes(32).toString('base64')}`;
const secretNew = `whsec_${randomBytes(32).toString('base64')}`;
/** Short delays, many of them: a test sees retries in seconds, and the receiver's outage spans several. */
const schedule = Array.from({ length: 40 }, () => 250).join(',');

let receiver: { server: Server; url: string; up: boolean; received: Received[] };
let dataDir: string;
let t: RestartableTestServer;
const admin = { authorization: `Bearer ${testApiKey}` };

async function startReceiver(): Promise<typeof receiver> {
  const state = { up: false, received: [] as Received[] };
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      if (!state.up) return void response.writeHead(503).end('down for maintenance');
      state.received.push({ path: request.url ?? '', headers: request.headers, body: Buffer.concat(chunks).toString('utf8') });
      response.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return Object.assign(state, { server, url });
}

const serverEnv = (secrets: string) => ({
  PORTHOLE_WEBHOOK_URL: `${receiver.url}/all`,
  PORTHOLE_WEBHOOK_SECRET: secrets,
  PORTHOLE_WEBHOOK_RETRY_SCHEDULE_MS: schedule,
});

async function api(method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<any> {
  const response = await fetch(`${t.server.url}${path}`, {
    method,
    headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return response.json();
}

before(async () => {
  receiver = await startReceiver();
  dataDir = await createTestDataDir();
  t = await startTestServerIn(dataDir, 'webhooks', serverEnv(secretOld));
});
after(async () => {
  await t?.stop();
  receiver?.server.close();
});

test('a receiver that is down loses nothing: retried, across a restart, then each delivered once and verified', async () => {
  const session = await t.readySession({});
  await t.api.endSession(session.id);
  // Both webhooks were tried, and refused, before the restart.
  await until(
    'both deliveries tried and refused',
    () => api('GET', `/v1/webhooks/deliveries?sessionId=${session.id}`, admin),
    ({ deliveries }) => deliveries.length === 2 && deliveries.every((d: any) => d.state === 'pending' && d.attempts >= 2 && d.lastStatus === 503),
    30_000,
  );
  assert.equal(receiver.received.length, 0);

  // porthole restarts (with the secret being rotated: the new one first, the old one still signing); then the receiver comes back.
  await t.close();
  t = await startTestServerIn(dataDir, 'webhooks', serverEnv(`${secretNew} ${secretOld}`));
  receiver.up = true;
  const log = await until(
    'both delivered after the restart',
    () => api('GET', `/v1/webhooks/deliveries?sessionId=${session.id}`, admin),
    ({ deliveries }) => deliveries.length === 2 && deliveries.every((d: any) => d.state === 'delivered'),
    30_000,
  );
  for (const delivery of log.deliveries) {
    assert.equal(delivery.lastStatus, 204);
    assert.ok(delivery.attempts >= 3, `retried (${delivery.attempts} attempts)`);
  }

  const mine = receiver.received.filter((r) => r.path === '/all' && JSON.parse(r.body).data.session.id === session.id);
  assert.deepEqual(mine.map((r) => JSON.parse(r.body).type).sort(), ['session.ended', 'session.ready']);
  assert.equal(new Set(mine.map((r) => r.headers['webhook-id'])).size, 2, 'one webhook-id per event');
  for (const r of mine) {
    // Either secret verifies during the rotation.
    for (const secret of [secretOld, secretNew]) {
      const payload = new Webhook(secret).verify(r.body, r.headers as Record<string, string>) as any;
      assert.equal(payload.data.session.id, session.id);
    }
    assert.match(String(r.headers['webhook-signature']), /^v1,\S+ v1,\S+$/);
  }
  const ended = JSON.parse(mine.find((r) => JSON.parse(r.body).type === 'session.ended')!.body);
  assert.equal(ended.data.session.state, 'ended');
  assert.equal(ended.data.session.reason, 'user');

  // Altered in transit, or replayed with another timestamp: refused.
  const sample = mine[0]!;
  const headers = sample.headers as Record<string, string>;
  assert.throws(() => new Webhook(secretNew).verify(sample.body.replace('session', 'sessioN'), headers));
  const oldTimestamp = String(Math.floor(Date.now() / 1000) - 600);
  assert.throws(() => new Webhook(secretNew).verify(sample.body, { ...headers, 'webhook-timestamp': oldTimestamp }));
  assert.throws(() => new Webhook(`whsec_${randomBytes(32).toString('base64')}`).verify(sample.body, headers), 'another secret');
});

test('a key’s own webhook gets the sessions it created, signed with its own secret; a dead receiver is given up after the schedule', async () => {
  const created = await api('POST', '/v1/keys', admin, { name: 'hooked app', webhookUrl: `${receiver.url}/app` });
  const dead = await api('POST', '/v1/keys', admin, { name: 'dead app', webhookUrl: 'http://127.0.0.1:1/nobody' });
  const appSession = (await api('POST', '/v1/sessions', { authorization: `Bearer ${created.key}` }, {})).id;
  const adminSession = (await t.readySession({})).id;
  const deadSession = (await api('POST', '/v1/sessions', { authorization: `Bearer ${dead.key}` }, {})).id;
  await t.waitForState(appSession, ['ready']);
  await t.waitForState(deadSession, ['ready']);

  const toApp = await until(
    'the app’s ready webhook',
    () => receiver.received.filter((r) => r.path === '/app'),
    (received) => received.length >= 1,
    30_000,
  );
  for (const r of toApp) {
    const payload = new Webhook(created.webhookSecret).verify(r.body, r.headers as Record<string, string>) as any;
    assert.equal(payload.data.session.id, appSession, 'only its own session');
    assert.throws(() => new Webhook(secretNew).verify(r.body, r.headers as Record<string, string>), 'not the server-wide secret');
  }
  assert.ok(receiver.received.some((r) => r.path === '/all' && JSON.parse(r.body).data.session.id === adminSession));

  // The app key reads its own deliveries, not the admin session's.
  const appLog = await api('GET', '/v1/webhooks/deliveries', { authorization: `Bearer ${created.key}` });
  assert.ok(appLog.deliveries.length > 0);
  assert.ok(
    appLog.deliveries.every((d: any) => d.sessionId === appSession && d.url.endsWith('/app')),
    'its own webhook’s only, not the server-wide one',
  );

  const given = await until(
    'the dead receiver’s delivery given up',
    () => api('GET', `/v1/webhooks/deliveries?sessionId=${deadSession}`, admin),
    ({ deliveries }) => deliveries.some((d: any) => d.url.endsWith('/nobody') && d.state === 'failed'),
    60_000,
  );
  const failed = given.deliveries.find((d: any) => d.url.endsWith('/nobody'));
  assert.equal(failed.attempts, 41, 'the first attempt and one per delay of the schedule');
  assert.match(failed.lastError, /could not be reached/);
  assert.equal(failed.nextAttemptAt, null);
  for (const id of [appSession, adminSession, deadSession]) await t.api.endSession(id);
});
