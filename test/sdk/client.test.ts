import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Porthole, PortholeError, type SessionEvent } from '@porthole/sdk';
import { deliverDemoCredential } from '../support/demo-sign-in.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { startTestServer, testApiKey, type TestServer } from '../support/server.js';
import { until } from '../support/until.js';

// The SDK's server side against a real porthole, as an app's server would use it: sessions, the
// live event streams (killed mid-stream and resumed), waitFor, errors and keys per app.
// test/sdk/webhook-delivery.test.ts has the webhooks.

let t: TestServer;
let porthole: Porthole;
before(async () => {
  t = await startTestServer('sdk-client');
  porthole = new Porthole({ baseUrl: t.server.url, apiKey: testApiKey });
});
after(() => t?.stop());

/** Every event of the session, read through the paged JSON API (the reference the streams are held to). */
const timeline = async (id: string) => (await t.api.listEvents(id)).events;
const seqs = (events: SessionEvent[]) => events.map((e) => e.seq);
const transitions = (events: SessionEvent[]) => events.filter((e) => e.to !== null).map((e) => e.to);

async function rejectsWith(promise: Promise<unknown>, code: string, status: number | null): Promise<PortholeError> {
  let caught: unknown;
  await promise.catch((error: unknown) => {
    caught = error;
  });
  assert.ok(caught instanceof PortholeError, `a PortholeError, not ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  assert.equal(caught.status, status);
  return caught;
}

describe('errors', () => {
  test('a server error is a PortholeError with its code, status, message and request id', async () => {
    const missing = await rejectsWith(porthole.getSession('ses_00000000000000000000'), 'SESSION_NOT_FOUND', 404);
    assert.ok(missing.requestId, 'the request id to quote');
    assert.ok(missing.message.length > 0);
    const unknown = await rejectsWith(porthole.createSession({ provider: 'nope' }), 'PROVIDER_UNKNOWN', 400);
    assert.ok(Array.isArray(unknown.details.known), 'details come along');
    await rejectsWith(new Porthole({ baseUrl: t.server.url, apiKey: 'not-the-key' }).listSessions(), 'API_KEY_INVALID', 401);
  });

  test('no server: NETWORK_ERROR, no status', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    await rejectsWith(new Porthole({ baseUrl: `http://127.0.0.1:${port}`, apiKey: testApiKey }).listSessions(), 'NETWORK_ERROR', null);
  });
});

describe('sessions', () => {
  test('create, get, and list filtered by userId and state', async () => {
    const user = `user-${randomBytes(4).toString('hex')}`;
    const other = `user-${randomBytes(4).toString('hex')}`;
    const a = await porthole.createSession({ userId: user });
    const b = await porthole.createSession({ userId: other });
    try {
      assert.equal(a.userId, user);
      assert.equal((await porthole.getSession(a.id)).id, a.id);
      assert.deepEqual(
        (await porthole.listSessions({ userId: user })).map((s) => s.id),
        [a.id],
      );
      assert.deepEqual(
        (await porthole.listSessions({ userId: other })).map((s) => s.id),
        [b.id],
      );
      const ended = await porthole.endSession(a.id);
      assert.equal(ended.state, 'ended');
      assert.equal((await porthole.endSession(a.id)).state, 'ended', 'idempotent');
      assert.deepEqual(
        (await porthole.listSessions({ userId: user, state: 'ended' })).map((s) => s.id),
        [a.id],
      );
      assert.deepEqual(await porthole.listSessions({ userId: other, state: 'ended' }), []);
      await rejectsWith(porthole.getCredentials(a.id), 'CREDENTIALS_NOT_FOUND', 404);
    } finally {
      await porthole.endSession(a.id);
      await porthole.endSession(b.id);
    }
  });
});

describe('live events', () => {
  test('events() follows a session to ready and, after endSession, to its end; allEvents() and waitFor() see the same', async () => {
    const firehose = new AbortController();
    const created = await porthole.createSession({ provider: 'demo', userId: 'events' });
    const id = created.id;
    // The firehose from the beginning of this server's history, kept to this session's events.
    const fromFirehose = (async () => {
      const mine: SessionEvent[] = [];
      for await (const event of porthole.allEvents({ after: 0, signal: firehose.signal })) {
        if (event.sessionId !== id) continue;
        mine.push(event);
        if (event.to === 'ended') return mine;
      }
      return mine;
    })();
    try {
      await rejectsWith(porthole.waitFor(id, ['completed'], { timeoutMs: 300 }), 'WAIT_TIMEOUT', null);
      const giveUp = new AbortController();
      const abandoned = porthole.waitFor(id, ['completed'], { signal: giveUp.signal });
      giveUp.abort(new Error('the app gave up'));
      await assert.rejects(abandoned, /the app gave up/);
      const ready = porthole.waitFor(id, ['ready', 'authenticating'], { timeoutMs: 120_000 });

      const seen: SessionEvent[] = [];
      for await (const event of porthole.events(id)) {
        seen.push(event);
        if (event.to === 'ready') await porthole.endSession(id);
      }
      // The iterator ended by itself, after the session's last event.
      const reference = await timeline(id);
      assert.deepEqual(seqs(seen), seqs(reference), 'every event, once, in order');
      assert.equal(transitions(seen)[0], 'starting');
      assert.ok(transitions(seen).includes('ready'), transitions(seen).join(' → '));
      assert.equal(transitions(seen).at(-1), 'ended');
      assert.ok(['ready', 'authenticating', 'ended'].includes((await ready).state));

      const unreachable = await rejectsWith(porthole.waitFor(id, ['completed']), 'WAIT_STATE_UNREACHABLE', null);
      assert.equal(unreachable.session?.state, 'ended');
      assert.equal((await porthole.waitFor(id, ['ended', 'completed'])).state, 'ended');

      assert.deepEqual(seqs(await fromFirehose), seqs(reference), 'the firehose carries the same events');
      // After a seq: only what follows it.
      const tail: SessionEvent[] = [];
      for await (const event of porthole.events(id, { after: reference.at(-2)!.seq })) tail.push(event);
      assert.deepEqual(seqs(tail), [reference.at(-1)!.seq]);
    } finally {
      firehose.abort();
      await fromFirehose.catch(() => {});
      await porthole.endSession(id).catch(() => {});
    }
  });

  test('a connection killed mid-stream is resumed with Last-Event-ID: no event missed or repeated', async () => {
    const proxy = await FaultProxy.start({ kind: 'tcp', host: '127.0.0.1', port: Number(new URL(t.server.url).port) });
    const through = new Porthole({ baseUrl: `http://127.0.0.1:${proxy.endpoint.kind === 'tcp' ? proxy.endpoint.port : 0}`, apiKey: testApiKey });
    const { id } = await porthole.createSession({ userId: 'reconnect' });
    try {
      const seen: SessionEvent[] = [];
      let healed: Promise<void> | null = null;
      let healError: unknown = null;
      for await (const event of through.events(id)) {
        seen.push(event);
        if (healed === null) {
          // Drop the stream (RST) and refuse reconnections until events happened meanwhile and the SDK
          // tried again; then let it through. The iteration goes on meanwhile: the SDK reconnects as it is asked for the next event.
          const acceptedBefore = proxy.accepted;
          proxy.set({ kind: 'reset' });
          healed = (async () => {
            try {
              const atCut = (await timeline(id)).at(-1)!.seq;
              await until(
                'the session moved on while the stream was down',
                () => timeline(id),
                (events) => events.at(-1)!.seq > atCut,
                60_000,
              );
              await until(
                'the SDK tried to reconnect',
                () => proxy.accepted,
                (n) => n > acceptedBefore,
                30_000,
              );
            } catch (error) {
              healError = error;
            } finally {
              proxy.set({ kind: 'none' });
            }
          })();
        }
        if (event.to === 'ready' || event.to === 'authenticating') await porthole.endSession(id);
      }
      await healed;
      if (healError) throw healError;
      const reference = await timeline(id);
      assert.deepEqual(seqs(seen), seqs(reference), 'every event, once, in order, across the cut');
      assert.equal(transitions(seen).at(-1), 'ended');
      assert.ok(proxy.accepted >= 3, `the SDK reconnected (${proxy.accepted} connections)`);
    } finally {
      await porthole.endSession(id).catch(() => {});
      await proxy.close();
    }
  });
});

describe('keys per app', () => {
  test('an app key sees only its own sessions; admin routes need an admin key; a revoked key is refused', async () => {
    const created = await porthole.createKey({ name: 'sdk-test-app' });
    assert.match(created.key, /^ph_/);
    assert.equal(created.admin, false);
    const app = new Porthole({ baseUrl: t.server.url, apiKey: created.key });
    const adminSession = await porthole.createSession({ userId: 'admin-made' });
    const appSession = await app.createSession({ userId: 'app-made' });
    try {
      assert.deepEqual(
        (await app.listSessions()).map((s) => s.id),
        [appSession.id],
      );
      await rejectsWith(app.getSession(adminSession.id), 'SESSION_FORBIDDEN', 403);
      await rejectsWith(app.createViewerTicket(adminSession.id), 'SESSION_FORBIDDEN', 403);
      await rejectsWith(app.getCredentials(adminSession.id), 'SESSION_FORBIDDEN', 403);
      await rejectsWith(app.endSession(adminSession.id), 'SESSION_FORBIDDEN', 403);
      await rejectsWith(app.listKeys(), 'API_KEY_ADMIN_REQUIRED', 403);
      const events = app.events(adminSession.id);
      await rejectsWith(events.next(), 'SESSION_FORBIDDEN', 403);
      assert.ok(
        (await porthole.listSessions()).some((s) => s.id === appSession.id),
        'the admin key sees every session',
      );

      assert.ok((await porthole.listKeys()).some((k) => k.id === created.id && k.name === 'sdk-test-app' && k.revokedAt === null));
      const revoked = await porthole.revokeKey(created.id);
      assert.equal(revoked.id, created.id);
      assert.ok(revoked.revokedAt);
      await rejectsWith(app.listSessions(), 'API_KEY_INVALID', 401);
    } finally {
      await porthole.endSession(adminSession.id).catch(() => {});
      await porthole.endSession(appSession.id).catch(() => {});
    }
  });
});

test('after the sign-in: a fresh access token alone, a run of the CLI followed live, and sign in again', async () => {
  const session = await t.readySession({ provider: 'demo', userId: 'sdk-user' });
  await deliverDemoCredential(t, session.id, t.server.demoOidc!.issuer);
  const token = await porthole.getAccessToken(session.id);
  assert.equal(token.tokenType, 'Bearer');
  assert.equal('refreshToken' in token || JSON.stringify(token).includes('refresh'), false, 'no refresh token');

  const run = await porthole.createRun({ sessionId: session.id, args: ['whoami'] });
  let output = '';
  const types: string[] = [];
  for await (const event of porthole.runEvents(run.id)) {
    types.push(event.type);
    if (event.type === 'run.output') output += event.data ?? '';
  }
  assert.match(output, /signed in as demo@porthole\.test/);
  assert.equal(types.at(-1), 'run.finished');
  assert.equal((await porthole.getRun(run.id)).state, 'succeeded');
  assert.ok((await porthole.listRuns()).some((r) => r.id === run.id));

  const again = await porthole.signInAgain(session.id);
  assert.equal(again.userId, 'sdk-user');
  await porthole.endSession(again.id);
});
