import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { Porthole, verifyWebhook, WebhookVerificationError, type WebhookEvent } from '@porthole/sdk';
import { startTestServer, testApiKey, type TestServer } from '../support/server.js';
import { until } from '../support/until.js';

// The webhooks a real porthole sends, received on 127.0.0.1 and verified with the SDK as an app's
// server would: the server-wide target (PORTHOLE_WEBHOOK_URL, signed with two secrets while it
// rotates, the receiver knowing only the new one) and an app key's own webhook (its secret from
// createKey), then the delivery log.

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A webhook receiver: keeps every request's path, headers and raw body, answers 204. */
async function startReceiver(): Promise<{ origin: string; received: Received[]; close(): Promise<void> }> {
  const received: Received[] = [];
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      received.push({ path: request.url ?? '', headers: request.headers, body: Buffer.concat(chunks).toString('utf8') });
      response.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const newSecret = () => `whsec_${randomBytes(24).toString('base64')}`;
const oldSecret = newSecret();
const currentSecret = newSecret();

let t: TestServer;
let receiver: Awaited<ReturnType<typeof startReceiver>>;
before(async () => {
  receiver = await startReceiver();
  t = await startTestServer('sdk-webhook-delivery', {
    PORTHOLE_WEBHOOK_URL: `${receiver.origin}/hooks/all`,
    PORTHOLE_WEBHOOK_SECRET: `${oldSecret} ${currentSecret}`,
  });
});
after(async () => {
  await t?.stop();
  await receiver?.close();
});

test('webhooks to the server-wide URL and to an app key’s own pass verifyWebhook with their secrets, once each; the log shows them delivered', async () => {
  const admin = new Porthole({ baseUrl: t.server.url, apiKey: testApiKey });
  const created = await admin.createKey({ name: 'sdk-webhooks-app', webhookUrl: `${receiver.origin}/hooks/app` });
  assert.match(created.webhookSecret ?? '', /^whsec_/);
  const app = new Porthole({ baseUrl: t.server.url, apiKey: created.key });
  const session = await app.createSession({ userId: 'webhooks' });
  try {
    await app.waitFor(session.id, ['ready', 'authenticating'], { timeoutMs: 120_000 });
    await app.endSession(session.id);

    /** This session's webhooks at `path`, verified with `secret`, one per webhook-id (a retry repeats its id). */
    const verified = (path: string, secret: string) => {
      const byId = new Map<string, WebhookEvent>();
      for (const r of receiver.received.filter((r) => r.path === path)) {
        const event = verifyWebhook(r.body, r.headers, secret);
        if (event.data.session.id === session.id) byId.set(String(r.headers['webhook-id']), event);
      }
      return [...byId.values()];
    };
    const ended = (events: WebhookEvent[]) => events.some((e) => e.type === 'session.ended');
    const all = await until('session.ended at the server-wide URL', () => verified('/hooks/all', currentSecret), ended, 60_000);
    const own = await until('session.ended at the key’s URL', () => verified('/hooks/app', created.webhookSecret!), ended, 60_000);
    for (const events of [all, own]) {
      assert.deepEqual(events.map((e) => e.type).sort(), ['session.ended', 'session.ready']);
      assert.equal(events.find((e) => e.type === 'session.ended')!.data.session.state, 'ended');
      assert.ok(events.every((e) => Number.isInteger(e.data.eventSeq) && !Number.isNaN(Date.parse(e.timestamp))));
    }

    // The key's secret does not verify the server-wide webhooks, nor the other way round; a changed body fails.
    const first = receiver.received.find((r) => r.path === '/hooks/all')!;
    assert.throws(() => verifyWebhook(first.body, first.headers, created.webhookSecret!), WebhookVerificationError);
    const mine = receiver.received.find((r) => r.path === '/hooks/app')!;
    assert.throws(() => verifyWebhook(mine.body, mine.headers, currentSecret), WebhookVerificationError);
    assert.throws(() => verifyWebhook(mine.body.replace('webhooks', 'webhookz'), mine.headers, created.webhookSecret!), WebhookVerificationError);

    const deliveries = await until(
      'the delivery log shows all four delivered',
      () => admin.listWebhookDeliveries({ sessionId: session.id }),
      (list) => list.length === 4 && list.every((d) => d.state === 'delivered'),
      30_000,
    );
    // The app key sees the deliveries to its own webhook, not those to the operator's PORTHOLE_WEBHOOK_URL.
    const ownLog = await app.listWebhookDeliveries({ sessionId: session.id });
    assert.deepEqual(ownLog.map((d) => `${d.type} ${new URL(d.url).pathname}`).sort(), ['session.ended /hooks/app', 'session.ready /hooks/app']);
    assert.deepEqual(deliveries.map((d) => `${d.type} ${new URL(d.url).pathname}`).sort(), [
      'session.ended /hooks/all',
      'session.ended /hooks/app',
      'session.ready /hooks/all',
      'session.ready /hooks/app',
    ]);
    assert.ok(deliveries.every((d) => d.sessionId === session.id && d.attempts === 1 && d.lastStatus === 204));
  } finally {
    await admin.endSession(session.id).catch(() => {});
  }
});

test('a session ended while it starts sends session.ended alone, and the server goes on answering', async () => {
  // Every call bounded: a server that stopped answering fails this test instead of hanging it.
  const bounded: typeof fetch = (input, init) => fetch(input, { ...init, signal: AbortSignal.timeout(20_000) });
  const admin = new Porthole({ baseUrl: t.server.url, apiKey: testApiKey, fetch: bounded });
  const session = await admin.createSession({ userId: 'ended-while-starting' });
  assert.equal(session.state, 'starting');
  assert.equal((await admin.endSession(session.id)).state, 'ended');
  assert.equal((await admin.getSession(session.id)).state, 'ended');
  const hooks = await until(
    'session.ended at the server-wide URL',
    () =>
      receiver.received
        .filter((r) => r.path === '/hooks/all')
        .map((r) => verifyWebhook(r.body, r.headers, currentSecret))
        .filter((e) => e.data.session.id === session.id),
    (events) => events.length > 0,
    30_000,
  );
  assert.deepEqual(
    hooks.map((e) => e.type),
    ['session.ended'],
  );
  const deliveries = await until(
    'the delivery delivered',
    () => admin.listWebhookDeliveries({ sessionId: session.id }),
    (list) => list.length === 1 && list[0]!.state === 'delivered',
    30_000,
  );
  assert.equal(deliveries[0]!.type, 'session.ended');
});
