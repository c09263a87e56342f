// The suite every Store passes (PGlite and PostgreSQL). Each test makes fresh sessions, so the
// tests share one store and one database.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AppError, type ErrorCode } from '../protocol/errors.js';
import { newRunId, newSandboxId, newSessionId, type SessionId } from '../protocol/ids.js';
import {
  canTransition,
  isTerminal,
  sessionEventSchema,
  sessionSchema,
  sessionStates,
  terminalStates,
  transitions,
  type Session,
  type SessionState,
} from '../protocol/session.js';
import type { NewCredential, SealedCredential, Store } from './store.js';

const isoTimestamp = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

// The shortest way through the table to each state.
const pathTo: Record<SessionState, readonly SessionState[]> = {
  starting: [],
  ready: ['ready'],
  authenticating: ['ready', 'authenticating'],
  completed: ['ready', 'completed'],
  failed: ['failed'],
  ended: ['ended'],
};

/** Sealed-looking bytes: the store treats them as opaque, so any bytes do (every value 0–255 included). */
function sealedFor(sessionId: SessionId, keyId = 'k_test', fill = 7): NewCredential {
  return {
    sessionId,
    provider: 'demo',
    keyId,
    nonce: Buffer.alloc(12, fill),
    ciphertext: Buffer.from(Array.from({ length: 300 }, (_, i) => (i + fill) % 256)),
    tag: Buffer.alloc(16, fill + 1),
    account: 'alice@example.com',
    expiresAt: '2030-01-02T03:04:05.000Z',
    verification: 'verified',
    refreshDueAt: '2030-01-02T02:59:05.000Z',
  };
}

/** What a stored credential adds to what was put, before any refresh. */
const freshlyStored = { state: 'active', version: 1, refreshedAt: null, refreshCount: 0, refreshFailures: 0, refreshError: null } as const;

async function expectAppError(promise: Promise<unknown>, code: ErrorCode): Promise<AppError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof AppError, `expected AppError ${code}, got ${String(error)}`);
    assert.equal(error.code, code);
    return error;
  }
  assert.fail(`expected AppError ${code}, but the call succeeded`);
}

export function storeConformance(name: string, open: () => Promise<Store>): void {
  describe(name, () => {
    let store!: Store;

    before(async () => {
      store = await open();
      await store.migrate();
    });
    after(() => store?.close());

    const create = (id: SessionId = newSessionId()) => store.createSession({ id, provider: 'demo', userId: 'user-1' });

    const move = (session: Session, to: SessionState, extra: { reason?: string | null; detail?: string } = {}) =>
      store.transition(session.id, {
        from: session.state,
        to,
        expectVersion: session.version,
        reason: extra.reason ?? (isTerminal(to) ? 'user' : null),
        ...(extra.detail !== undefined && { detail: extra.detail }),
      });

    const sessionIn = async (state: SessionState): Promise<Session> => {
      let session = await create();
      for (const to of pathTo[state]) session = await move(session, to);
      assert.equal(session.state, state);
      return session;
    };

    it('migrates idempotently, also when called concurrently', async () => {
      const session = await create();
      await store.migrate();
      await Promise.all([store.migrate(), store.migrate()]);
      assert.deepEqual(await store.getSession(session.id), session);
    });

    it('creates a session in starting at version 1 with its session.created event', async () => {
      const id = newSessionId();
      const session = await store.createSession({ id, provider: 'codex', userId: null });
      sessionSchema.parse(session);
      assert.deepEqual(
        { ...session, createdAt: undefined, updatedAt: undefined },
        {
          id,
          state: 'starting',
          provider: 'codex',
          userId: null,
          apiKeyId: null,
          reason: null,
          detail: null,
          sandboxId: null,
          node: null,
          version: 1,
          createdAt: undefined,
          updatedAt: undefined,
          credential: null,
        },
      );
      assert.match(session.createdAt, isoTimestamp);
      assert.match(session.updatedAt, isoTimestamp);
      assert.deepEqual(await store.getSession(id), session);

      const events = await store.listEvents(id);
      assert.equal(events.length, 1);
      assert.deepEqual(
        { ...events[0], seq: 0, at: '' },
        {
          seq: 0,
          sessionId: id,
          type: 'session.created',
          from: null,
          to: 'starting',
          reason: null,
          details: {},
          at: '',
        },
      );

      await assert.rejects(store.createSession({ id, provider: null, userId: null }), 'a duplicate id is refused');
      assert.equal(await store.getSession(newSessionId()), null);
    });

    it('lists newest first, filtered by state, up to a limit', async () => {
      const a = await create();
      const b = await move(await create(), 'ready');
      const c = await create();
      const ids = (sessions: Session[]) => sessions.map((s) => s.id);

      assert.deepEqual(ids(await store.listSessions({ limit: 3 })), [c.id, b.id, a.id]);
      assert.deepEqual(ids(await store.listSessions({ states: ['starting'], limit: 2 })), [c.id, a.id]);
      assert.deepEqual(ids(await store.listSessions({ states: ['ready', 'starting'], limit: 3 })), [c.id, b.id, a.id]);

      const ready = await store.listSessions({ states: ['ready'] });
      assert.ok(ready.every((s) => s.state === 'ready'));
      assert.ok(ids(ready).includes(b.id));
      assert.ok(!ids(ready).includes(a.id));

      const all = await store.listSessions();
      assert.ok(all.length >= 3);
      const created = all.map((s) => Date.parse(s.createdAt));
      assert.deepEqual(
        created,
        [...created].sort((x, y) => y - x),
      );
    });

    it('counts sessions by state, every state present', async () => {
      const before = await store.countSessions();
      assert.deepEqual(Object.keys(before).sort(), [...sessionStates].sort());
      await create();
      await move(await create(), 'ready');
      const after = await store.countSessions();
      assert.equal(after.starting, before.starting + 1);
      assert.equal(after.ready, before.ready + 1);
    });

    it('makes every move of the transition table', async () => {
      for (const from of sessionStates) {
        for (const to of transitions[from]) {
          const previous = await sessionIn(from);
          const detail = to === 'failed' ? 'The agent did not answer on its health port.' : undefined;
          const moved = await move(previous, to, { reason: 'because', ...(detail && { detail }) });
          sessionSchema.parse(moved);
          assert.equal(moved.state, to, `${from} → ${to}`);
          assert.equal(moved.version, previous.version + 1);
          assert.equal(moved.reason, isTerminal(to) ? 'because' : null, 'a reason is kept for terminal states');
          assert.equal(moved.detail, detail ?? null);
          assert.equal(moved.createdAt, previous.createdAt);
          assert.ok(moved.updatedAt >= previous.updatedAt);
          assert.deepEqual(await store.getSession(moved.id), moved);
        }
      }
    });

    it('refuses a move that is not in the table and changes nothing', async () => {
      for (const from of sessionStates.filter((s) => !isTerminal(s))) {
        for (const to of sessionStates.filter((s) => !canTransition(from, s))) {
          const session = await sessionIn(from);
          await expectAppError(move(session, to), 'SESSION_STATE_CONFLICT');
          assert.deepEqual(await store.getSession(session.id), session, `${from} → ${to}`);
        }
      }
    });

    it('keeps terminal states permanent', async () => {
      for (const state of terminalStates) {
        const session = await sessionIn(state);
        const id = session.id;
        for (const to of sessionStates) {
          await expectAppError(move(session, to), 'SESSION_STATE_CONFLICT');
        }
        // Claiming a live state at the current version does not get past the compare-and-set.
        const error = await expectAppError(
          store.transition(id, { from: 'ready', to: 'ended', expectVersion: session.version, reason: 'user' }),
          'SESSION_STATE_CONFLICT',
        );
        assert.deepEqual(error.details?.current, { state, version: session.version });
        await expectAppError(store.setSandbox(id, 'sbx_late'), 'SESSION_STATE_CONFLICT');
        assert.deepEqual(await store.getSession(id), session);
      }
    });

    it('refuses a stale version and reports the current state and version', async () => {
      const session = await create();
      const ready = await move(session, 'ready');
      const error = await expectAppError(move(session, 'failed'), 'SESSION_STATE_CONFLICT');
      assert.deepEqual(error.details?.current, { state: 'ready', version: 2 });
      assert.deepEqual(error.details?.expected, { state: 'starting', version: 1 });
      await expectAppError(move({ ...ready, version: 1 }, 'ended'), 'SESSION_STATE_CONFLICT');
      assert.deepEqual(await store.getSession(ready.id), ready);
      assert.equal((await store.listEvents(ready.id)).length, 2, 'a refused move writes no event');

      await expectAppError(store.transition(newSessionId(), { from: 'starting', to: 'ready', expectVersion: 1, reason: null }), 'SESSION_NOT_FOUND');
    });

    it('writes one event per transition with its from, to, reason and details', async () => {
      const session = await create();
      const id = session.id;
      const ready = await store.transition(id, {
        from: 'starting',
        to: 'ready',
        expectVersion: 1,
        reason: 'vnc_answered',
        details: { elapsedMs: 1600 },
      });
      await store.transition(id, {
        from: 'ready',
        to: 'failed',
        expectVersion: ready.version,
        reason: 'SANDBOX_UNREACHABLE',
        detail: 'The VNC endpoint refused the connection.',
        details: { hop: 'vnc' },
      });
      const events = await store.listEvents(id);
      for (const event of events) {
        sessionEventSchema.parse(event);
        assert.equal(typeof event.seq, 'number');
        assert.match(event.at, isoTimestamp);
      }
      assert.deepEqual(
        events.map(({ type, from, to, reason, details }) => ({ type, from, to, reason, details })),
        [
          { type: 'session.created', from: null, to: 'starting', reason: null, details: {} },
          { type: 'session.ready', from: 'starting', to: 'ready', reason: 'vnc_answered', details: { elapsedMs: 1600 } },
          { type: 'session.failed', from: 'ready', to: 'failed', reason: 'SANDBOX_UNREACHABLE', details: { hop: 'vnc' } },
        ],
      );
      const failed = await store.getSession(id);
      assert.equal(failed?.reason, 'SANDBOX_UNREACHABLE');
      assert.equal(failed?.detail, 'The VNC endpoint refused the connection.');
    });

    it('appends events and lists them in order, after a given seq', async () => {
      const session = await create();
      const other = await create();
      const id = session.id;
      const started = await store.appendEvent(id, { type: 'step.started', details: { step: 'agent' } });
      await store.appendEvent(other.id, { type: 'step.started' });
      const succeeded = await store.appendEvent(id, { type: 'step.succeeded', reason: 'healthy' });
      sessionEventSchema.parse(succeeded);
      assert.ok(succeeded.seq > started.seq);
      assert.deepEqual(started.details, { step: 'agent' });
      assert.equal(succeeded.reason, 'healthy');

      const events = await store.listEvents(id);
      assert.deepEqual(
        events.map((e) => e.type),
        ['session.created', 'step.started', 'step.succeeded'],
      );
      assert.deepEqual(events.slice(1), [started, succeeded]);
      assert.deepEqual(await store.listEvents(id, { afterSeq: started.seq }), [succeeded]);
      assert.deepEqual(await store.listEvents(id, { afterSeq: succeeded.seq }), []);

      await expectAppError(store.appendEvent(newSessionId(), { type: 'viewer.connected' }), 'SESSION_NOT_FOUND');
    });

    it('pages events with a limit, each exactly once, and counts them by type', async () => {
      const id = (await create()).id;
      for (let i = 0; i < 7; i++) await store.appendEvent(id, { type: i % 2 ? 'login.waiting' : 'step.started', details: { i } });
      const all = await store.listEvents(id);
      assert.equal(all.length, 8);
      const paged = [];
      for (let after = 0; ; ) {
        const page = await store.listEvents(id, { afterSeq: after, limit: 3 });
        assert.ok(page.length <= 3);
        if (page.length === 0) break;
        paged.push(...page);
        after = page.at(-1)!.seq;
      }
      assert.deepEqual(paged, all);
      assert.equal(await store.countEvents(id, ['login.waiting']), 3);
      assert.equal(await store.countEvents(id, ['login.waiting', 'step.started', 'session.created']), 8);
      assert.equal(await store.countEvents(id, []), 0);
      assert.equal(await store.countEvents(newSessionId(), ['session.created']), 0);
    });

    it('sets the sandbox id of a live session', async () => {
      const session = await create();
      const updated = await store.setSandbox(session.id, 'sbx_00000000000000000001');
      assert.equal(updated.sandboxId, 'sbx_00000000000000000001');
      assert.equal(updated.version, session.version + 1);
      assert.equal(updated.state, 'starting');
      assert.deepEqual(await store.getSession(session.id), updated);
      await expectAppError(store.setSandbox(newSessionId(), 'sbx_x'), 'SESSION_NOT_FOUND');
    });

    it('hands a pooled sandbox to one live session only, and forgets it then', async () => {
      const sandboxId = newSandboxId();
      await store.addPooledSandbox(sandboxId);
      await store.addPooledSandbox(sandboxId);
      const pooled = (await store.listPooledSandboxes()).filter((p) => p.sandboxId === sandboxId);
      assert.equal(pooled.length, 1, 'adding twice keeps one mark');
      assert.match(pooled[0]!.createdAt, isoTimestamp);

      const [first, second] = [await create(), await create()];
      // Both ask at once: exactly one gets it.
      const taken = await Promise.all([store.takePooledSandbox(first.id, sandboxId), store.takePooledSandbox(second.id, sandboxId)]);
      const winners = taken.filter((t) => t !== null);
      assert.equal(winners.length, 1, 'one session takes the sandbox');
      assert.equal(winners[0]!.sandboxId, sandboxId);
      assert.deepEqual(await store.getSession(winners[0]!.id), winners[0]);
      const loser = taken[0] ? second : first;
      assert.equal((await store.getSession(loser.id))!.sandboxId, null, 'the other session is untouched');
      assert.ok(!(await store.listPooledSandboxes()).some((p) => p.sandboxId === sandboxId), 'a taken sandbox is no longer pooled');
    });

    it('gives a pooled sandbox to no ended session, and keeps the mark then', async () => {
      const sandboxId = newSandboxId();
      await store.addPooledSandbox(sandboxId);
      const session = await create();
      await store.transition(session.id, { from: 'starting', to: 'ended', expectVersion: session.version, reason: 'user' });
      assert.equal(await store.takePooledSandbox(session.id, sandboxId), null);
      assert.equal(await store.takePooledSandbox(newSessionId(), sandboxId), null, 'nor to an unknown session');
      assert.ok(
        (await store.listPooledSandboxes()).some((p) => p.sandboxId === sandboxId),
        'still pooled',
      );
      await store.removePooledSandbox(sandboxId);
      await store.removePooledSandbox(sandboxId);
      assert.ok(!(await store.listPooledSandboxes()).some((p) => p.sandboxId === sandboxId), 'removed, idempotently');
    });

    it('stores API keys and finds them by hash; a revoked key stays findable but no longer counts', async () => {
      const count = await store.countApiKeys();
      const suffix = newSessionId().slice(4);
      const keyHash = `hash-${suffix}`;
      await store.addApiKey({ id: `key_${suffix}`, name: 'ci', keyHash, admin: false });

      const found = await store.findApiKey(keyHash);
      assert.ok(found);
      assert.deepEqual(
        { ...found, createdAt: '' },
        { id: `key_${suffix}`, name: 'ci', admin: false, webhookUrl: null, webhookSecret: null, createdAt: '', revokedAt: null },
      );
      assert.match(found.createdAt, isoTimestamp);
      assert.equal(await store.countApiKeys(), count + 1);
      assert.equal(await store.findApiKey(`unknown-${suffix}`), null);
      await assert.rejects(store.addApiKey({ id: `key2_${suffix}`, name: 'dup', keyHash, admin: false }), 'a hash is unique');

      const sealed = { keyId: 'mk_1', nonce: Buffer.alloc(12, 1), ciphertext: Buffer.from('sealed'), tag: Buffer.alloc(16, 2) };
      const withHook = await store.addApiKey({
        id: `key3_${suffix}`,
        name: 'app',
        keyHash: `h3-${suffix}`,
        admin: false,
        webhookUrl: 'http://127.0.0.1:9/h',
        webhookSecret: sealed,
      });
      assert.equal(withHook.webhookUrl, 'http://127.0.0.1:9/h');
      assert.deepEqual(withHook.webhookSecret, sealed);
      assert.deepEqual((await store.getApiKey(`key3_${suffix}`))?.webhookSecret, sealed);
      assert.ok((await store.listApiKeys()).some((k) => k.id === `key3_${suffix}`));

      const revoked = await store.revokeApiKey(`key_${suffix}`);
      assert.match(revoked?.revokedAt ?? '', isoTimestamp);
      assert.equal((await store.revokeApiKey(`key_${suffix}`))?.revokedAt, revoked?.revokedAt, 'the first revocation time stays');
      assert.equal((await store.findApiKey(keyHash))?.revokedAt, revoked?.revokedAt);
      assert.equal(await store.countApiKeys(), count + 1, 'two added, one revoked');
      assert.equal(await store.revokeApiKey(`unknown-${suffix}`), null);
    });

    it('lists sessions by the key that created them and by user', async () => {
      const suffix = newSessionId().slice(4);
      const mine = await store.createSession({ id: newSessionId(), provider: 'demo', userId: `u-${suffix}`, apiKeyId: `app-${suffix}` });
      const other = await store.createSession({ id: newSessionId(), provider: 'demo', userId: `u-${suffix}`, apiKeyId: `other-${suffix}` });
      assert.equal(mine.apiKeyId, `app-${suffix}`);
      assert.deepEqual(
        (await store.listSessions({ apiKeyId: `app-${suffix}` })).map((s) => s.id),
        [mine.id],
      );
      assert.deepEqual(
        (await store.listSessions({ userId: `u-${suffix}` })).map((s) => s.id),
        [other.id, mine.id],
      );
      assert.deepEqual(await store.listSessions({ userId: `u-${suffix}`, apiKeyId: `other-${suffix}`, states: ['ready'] }), []);
    });

    it('hands out every event in seq order, narrowed to a key, for the firehose', async () => {
      const suffix = newSessionId().slice(4);
      const start = await store.lastEventSeq();
      const a = await store.createSession({ id: newSessionId(), provider: null, userId: null, apiKeyId: `fa-${suffix}` });
      const b = await store.createSession({ id: newSessionId(), provider: null, userId: null, apiKeyId: `fb-${suffix}` });
      // Concurrent appends to two sessions: the firehose still sees them in seq order, none missing.
      await Promise.all(Array.from({ length: 10 }, (_, i) => store.appendEvent(i % 2 ? a.id : b.id, { type: 'viewer.connected' })));
      const all = await store.listAllEvents({ afterSeq: start, limit: 100 });
      const seqs = all.map((e) => e.seq);
      assert.deepEqual(
        seqs,
        [...seqs].sort((x, y) => x - y),
      );
      assert.ok(all.filter((e) => e.sessionId === a.id || e.sessionId === b.id).length >= 12);
      const onlyA = await store.listAllEvents({ afterSeq: start, apiKeyId: `fa-${suffix}`, limit: 100 });
      assert.deepEqual([...new Set(onlyA.map((e) => e.sessionId))], [a.id]);
      assert.equal(onlyA.length, 6);
      assert.equal(await store.lastEventSeq(), Math.max(...seqs, start));
    });

    it('fans events out to webhook deliveries once, leases them to one sender, and records attempts', async () => {
      // Drain what earlier tests left, so this test's events are the next ones.
      while ((await store.fanOutEvents(500, () => [])) > 0) {}
      const suffix = newSessionId().slice(4);
      const session = await store.createSession({ id: newSessionId(), provider: null, userId: null, apiKeyId: `wh-${suffix}` });
      const read: number[] = [];
      const plan = (events: { seq: number; sessionId: SessionId; type: string; apiKeyId: string | null; session: { id: string } }[]) => {
        read.push(...events.map((e) => e.seq));
        for (const e of events) assert.equal(e.session.id, e.sessionId, 'each event comes with its session');
        return events
          .filter((e) => e.sessionId === session.id)
          .map((e) => ({
            id: `msg_${e.seq}_${suffix}`,
            target: e.apiKeyId ?? 'env',
            url: 'http://127.0.0.1:9/',
            sessionId: e.sessionId,
            eventSeq: e.seq,
            type: e.type,
            payload: { n: e.seq },
          }));
      };
      const [n1, n2] = await Promise.all([store.fanOutEvents(100, plan), store.fanOutEvents(100, plan)]);
      assert.equal(n1 + n2, 1, 'the created event, read by one of two concurrent fan-outs');
      assert.equal(new Set(read).size, read.length, 'no event planned twice');
      assert.equal(await store.fanOutEvents(100, plan), 0);

      const [x, y] = await Promise.all([store.leaseDueDeliveries(10, 60_000), store.leaseDueDeliveries(10, 60_000)]);
      const mine = [...x, ...y].filter((d) => d.sessionId === session.id);
      assert.equal(mine.length, 1, 'leased to one caller');
      const delivery = mine[0]!;
      assert.equal(delivery.state, 'pending');
      assert.deepEqual(delivery.payload, { n: delivery.eventSeq });
      assert.ok(!(await store.leaseDueDeliveries(10, 60_000)).some((d) => d.id === delivery.id), 'held by its lease');

      const later = new Date(Date.now() + 3600_000).toISOString();
      await store.recordDeliveryAttempt(delivery.id, { state: 'pending', status: 503, error: 'HTTP 503', nextAttemptAt: later });
      assert.ok(!(await store.leaseDueDeliveries(10, 60_000)).some((d) => d.id === delivery.id), 'not due before its next attempt');
      await store.recordDeliveryAttempt(delivery.id, { state: 'delivered', status: 204, error: null });
      const [logged] = await store.listDeliveries({ sessionId: session.id, limit: 10 });
      assert.equal(logged?.state, 'delivered');
      assert.equal(logged?.attempts, 2);
      assert.equal(logged?.lastStatus, 204);
      assert.match(logged?.deliveredAt ?? '', isoTimestamp);
      assert.deepEqual(
        (await store.listDeliveries({ apiKeyId: `wh-${suffix}`, limit: 10 })).map((d) => d.id),
        [delivery.id],
      );
      assert.deepEqual(await store.listDeliveries({ apiKeyId: `nobody-${suffix}`, limit: 10 }), []);
    });

    it('stores a sealed credential once per session: the first stays, a second put says it existed', async () => {
      const session = await create();
      const id = session.id;
      assert.equal(await store.getCredential(id), null);
      const first = sealedFor(id);
      assert.deepEqual(await store.putCredential(first), { created: true });

      const stored = await store.getCredential(id);
      assert.ok(stored);
      assert.match(stored.capturedAt, isoTimestamp);
      assert.deepEqual({ ...stored, capturedAt: '' }, { ...first, ...freshlyStored, capturedAt: '' }, 'bytes and fields round-trip exactly');
      assert.ok(Buffer.isBuffer(stored.ciphertext) && Buffer.isBuffer(stored.nonce) && Buffer.isBuffer(stored.tag));

      assert.deepEqual(await store.putCredential(sealedFor(id, 'k_other', 9)), { created: false });
      assert.deepEqual(await store.getCredential(id), stored, 'the first credential is kept');

      await expectAppError(store.putCredential(sealedFor(newSessionId())), 'SESSION_NOT_FOUND');
      assert.equal(await store.getCredential(newSessionId()), null);
    });

    it('keeps how far a credential was verified, and only the known words', async () => {
      const offline = (await create()).id;
      await store.putCredential({ ...sealedFor(offline), verification: 'offline-checks-only' });
      assert.equal((await store.getCredential(offline))?.verification, 'offline-checks-only');
      assert.equal((await store.getSession(offline))?.credential?.verification, 'offline-checks-only');
      const checked = (await create()).id;
      await store.putCredential(sealedFor(checked));
      assert.equal((await store.getCredential(checked))?.verification, 'verified');
      const bogus = (await create()).id;
      await assert.rejects(store.putCredential({ ...sealedFor(bogus), verification: 'trust-me' as never }), 'the column takes only the persisted words');
      assert.equal(await store.getCredential(bogus), null);
    });

    it('lets exactly one of 10 concurrent puts for a session store its credential', async () => {
      const id = (await create()).id;
      const results = await Promise.all(Array.from({ length: 10 }, (_, i) => store.putCredential(sealedFor(id, `k_${i}`, i))));
      assert.equal(results.filter((r) => r.created).length, 1);
      const winner = results.findIndex((r) => r.created);
      assert.equal((await store.getCredential(id))?.keyId, `k_${winner}`);
    });

    it('reads a session with its credential summary, never its sealed content', async () => {
      const session = await move(await create(), 'ready');
      const id = session.id;
      assert.equal(session.credential, null);
      await store.putCredential({ ...sealedFor(id), account: null, expiresAt: null });
      await store.setAgentTokenHash(id, 'a'.repeat(64));
      const read = await store.getSession(id);
      assert.ok(read?.credential);
      sessionSchema.parse(read);
      assert.deepEqual(
        { ...read.credential, capturedAt: '' },
        { provider: 'demo', account: null, capturedAt: '', expiresAt: null, verification: 'verified', state: 'active', refreshedAt: null, refreshError: null },
      );
      assert.equal(read.credential.capturedAt, (await store.getCredential(id))?.capturedAt);
      assert.deepEqual(
        Object.keys(read).filter((k) => /token|hash|nonce|cipher|tag/i.test(k)),
        [],
      );

      const listed = (await store.listSessions({ states: ['ready'] })).find((s) => s.id === id);
      assert.deepEqual(listed, read);
      const completed = await move(read, 'completed');
      assert.deepEqual(completed.credential, read.credential, 'a transition returns the summary too');
      const other = await move(await create(), 'ready');
      assert.equal(other.credential, null);
    });

    it('lists credentials without their sealed content', async () => {
      const id = (await create()).id;
      await store.putCredential(sealedFor(id, 'k_listed'));
      const listed = (await store.listCredentials()).find((c) => c.sessionId === id);
      assert.ok(listed);
      assert.deepEqual(Object.keys(listed).sort(), [
        'account',
        'capturedAt',
        'expiresAt',
        'keyId',
        'provider',
        'refreshCount',
        'refreshDueAt',
        'refreshError',
        'refreshFailures',
        'refreshedAt',
        'sessionId',
        'state',
        'verification',
        'version',
      ]);
      assert.equal(listed.keyId, 'k_listed');
      assert.equal(listed.expiresAt, '2030-01-02T03:04:05.000Z');
    });

    it('re-seals every credential in one transaction, and changes nothing when re-sealing one fails', async () => {
      const ids: SessionId[] = [];
      for (let i = 0; i < 3; i++) {
        const id = (await create()).id;
        await store.putCredential(sealedFor(id, 'k_before', i));
        ids.push(id);
      }
      const before = await Promise.all(ids.map((id) => store.getCredential(id)));
      const total = (await store.listCredentials()).length;

      const poisoned = ids[1]!;
      await assert.rejects(
        store.resealCredentials((c) => {
          if (c.sessionId === poisoned) throw new Error('cannot re-seal this one');
          return { keyId: 'k_half', nonce: Buffer.alloc(12), ciphertext: Buffer.from('x'), tag: Buffer.alloc(16) };
        }),
        /cannot re-seal this one/,
      );
      assert.deepEqual(await Promise.all(ids.map((id) => store.getCredential(id))), before, 'rolled back');

      const reseal = (c: { ciphertext: Buffer; nonce: Buffer; tag: Buffer }): SealedCredential => ({
        keyId: 'k_after',
        nonce: Buffer.alloc(12, 1),
        ciphertext: Buffer.concat([Buffer.from('re:'), c.ciphertext]),
        tag: Buffer.alloc(16, 2),
      });
      assert.equal(await store.resealCredentials(reseal), total);
      for (const [i, id] of ids.entries()) {
        const after = await store.getCredential(id);
        const old = before[i]!;
        assert.deepEqual(after, { ...old, ...reseal(old) }, 'only the sealed form changes');
      }
      assert.ok((await store.listCredentials()).every((c) => c.keyId === 'k_after'));
    });

    it('claims a due refresh once: concurrent claims get it once, a live lease hides it, an expired one frees it', async () => {
      const id = (await create()).id;
      const past = new Date(Date.now() - 60_000).toISOString();
      await store.putCredential({ ...sealedFor(id), provider: 'refresh-test', refreshDueAt: past });
      const notDue = (await create()).id;
      await store.putCredential({ ...sealedFor(notDue), provider: 'refresh-test', refreshDueAt: '2030-01-01T00:00:00.000Z' });
      const claim = () => store.leaseRefreshes({ limit: 10, leaseMs: 60_000, providers: ['refresh-test'] });
      const claims = await Promise.all(Array.from({ length: 5 }, claim));
      const mine = claims.flat().filter((c) => c.sessionId === id);
      assert.equal(mine.length, 1, 'one claim among five concurrent ones');
      assert.ok(!claims.flat().some((c) => c.sessionId === notDue), 'not due: not claimed');
      assert.deepEqual(await claim(), [], 'the lease hides it');
      assert.deepEqual(await store.leaseRefreshes({ limit: 1, leaseMs: 60_000, providers: ['refresh-test'], sessionId: id }), [], 'even asked for by id');
      assert.deepEqual(await store.leaseRefreshes({ limit: 10, leaseMs: 60_000, providers: ['other'] }), [], 'only the providers asked for');

      // Asked for by id: only if due, unless even if not (a run holds the grant for its time).
      assert.deepEqual(await store.leaseRefreshes({ limit: 1, leaseMs: 60_000, providers: ['refresh-test'], sessionId: notDue }), [], 'not due');
      const [byId] = await store.leaseRefreshes({ limit: 1, leaseMs: 1, providers: ['refresh-test'], sessionId: notDue, evenIfNotDue: true });
      assert.equal(byId?.sessionId, notDue);
      // The 1 ms lease ends in database time: a claim soon after gets it.
      let reclaimed: unknown[] = [];
      for (let i = 0; i < 50 && reclaimed.length === 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 10));
        reclaimed = await store.leaseRefreshes({ limit: 1, leaseMs: 60_000, providers: ['refresh-test'], sessionId: notDue, evenIfNotDue: true });
      }
      assert.equal(reclaimed.length, 1, 'an ended lease frees it');
    });

    it('records a refresh over the version it claimed, with its event, in one go; a stale version writes nothing', async () => {
      const id = (await create()).id;
      await store.putCredential({ ...sealedFor(id), provider: 'refresh-test', refreshDueAt: new Date(Date.now() - 1000).toISOString() });
      const [claimed] = await store.leaseRefreshes({ limit: 1, leaseMs: 60_000, providers: ['refresh-test'], sessionId: id });
      assert.ok(claimed, 'due: claimed by id');
      const sealed: SealedCredential = { keyId: 'k_new', nonce: Buffer.alloc(12, 3), ciphertext: Buffer.from('refreshed'), tag: Buffer.alloc(16, 4) };
      const due = '2031-01-01T00:00:00.000Z';
      assert.equal(
        await store.finishRefresh(id, claimed.version, { kind: 'refreshed', sealed, expiresAt: '2031-01-01T00:05:00.000Z', refreshDueAt: due }),
        true,
      );
      const after = await store.getCredential(id);
      assert.ok(after);
      assert.deepEqual([after.keyId, after.ciphertext.toString(), after.version, after.refreshCount, after.refreshDueAt], ['k_new', 'refreshed', 2, 1, due]);
      assert.match(after.refreshedAt ?? '', isoTimestamp);
      assert.equal((await store.getSession(id))?.credential?.expiresAt, '2031-01-01T00:05:00.000Z');
      assert.equal(await store.finishRefresh(id, claimed.version, { kind: 'refused', reason: 'late' }), false, 'the version it read is gone');
      assert.equal((await store.getCredential(id))?.state, 'active');
      const [again] = await store.leaseRefreshes({ limit: 1, leaseMs: 60_000, providers: ['refresh-test'], sessionId: id, evenIfNotDue: true });
      assert.ok(again, 'the finished refresh ended the lease');

      const retryAt = new Date(Date.now() + 5000).toISOString();
      assert.equal(await store.finishRefresh(id, again.version, { kind: 'failed', reason: 'HTTP 503', refreshDueAt: retryAt }), true);
      const failed = await store.getCredential(id);
      assert.deepEqual(
        [failed?.state, failed?.refreshFailures, failed?.refreshError, failed?.refreshDueAt, failed?.version],
        ['active', 1, 'HTTP 503', retryAt, 2],
      );

      const [last] = await store.leaseRefreshes({ limit: 1, leaseMs: 60_000, providers: ['refresh-test'], sessionId: id, evenIfNotDue: true });
      assert.equal(await store.finishRefresh(id, last!.version, { kind: 'refused', reason: 'invalid_grant' }), true);
      const refused = await store.getCredential(id);
      assert.deepEqual([refused?.state, refused?.refreshError, refused?.refreshDueAt], ['needs_login', 'invalid_grant', null]);
      assert.equal((await store.getSession(id))?.credential?.state, 'needs_login');
      assert.deepEqual(
        await store.leaseRefreshes({ limit: 1, leaseMs: 60_000, providers: ['refresh-test'], sessionId: id, evenIfNotDue: true }),
        [],
        'needs_login is never claimed',
      );
      const events = (await store.listEvents(id)).filter((e) => e.type.startsWith('credential.'));
      assert.deepEqual(
        events.map((e) => e.type),
        ['credential.refreshed', 'credential.refresh_failed', 'credential.needs_login'],
      );
      assert.deepEqual(events[2]?.details, { reason: 'invalid_grant' });
    });

    it('keeps a run with its timeline in order; moves it; lists it by key', async () => {
      const session = await create();
      const id = newRunId();
      const run = await store.createRun({ id, sessionId: session.id, provider: 'demo', apiKeyId: 'key_runs', args: ['whoami', 'ü'], timeoutMs: 60_000 });
      assert.deepEqual([run.state, run.args, run.exitCode, run.finishedAt, run.apiKeyId], ['starting', ['whoami', 'ü'], null, null, 'key_runs']);
      await expectAppError(
        store.createRun({ id: newRunId(), sessionId: newSessionId(), provider: 'demo', apiKeyId: null, args: [], timeoutMs: 1000 }),
        'SESSION_NOT_FOUND',
      );

      const output = Array.from({ length: 30 }, (_, i) => ({
        type: 'run.output' as const,
        stream: i % 2 ? ('stderr' as const) : ('stdout' as const),
        data: `line ${i}\n`,
      }));
      await store.appendRunEvents(id, [{ type: 'run.started', details: { pid: 7 } }, ...output]);
      await store.appendRunEvents(id, []);
      const events = await store.listRunEvents(id, { afterSeq: 0, limit: 100 });
      assert.deepEqual(
        events.map((e) => e.type),
        ['run.created', 'run.started', ...output.map((e) => e.type)],
      );
      assert.deepEqual(
        events.slice(2).map((e) => [e.stream, e.data]),
        output.map((e) => [e.stream, e.data]),
        'in the order given',
      );
      assert.ok(events.every((e, i) => i === 0 || e.seq > events[i - 1]!.seq));
      assert.deepEqual(events[1]?.details, { pid: 7 });
      const page = await store.listRunEvents(id, { afterSeq: events[5]!.seq, limit: 3 });
      assert.deepEqual(
        page.map((e) => e.seq),
        events.slice(6, 9).map((e) => e.seq),
      );

      const done = await store.updateRun(id, { state: 'succeeded', exitCode: 0, finished: true });
      assert.deepEqual([done.state, done.exitCode, done.reason], ['succeeded', 0, null]);
      assert.match(done.finishedAt ?? '', isoTimestamp);
      assert.deepEqual(await store.getRun(id), done);
      await expectAppError(store.updateRun(newRunId(), { state: 'failed' }), 'RUN_NOT_FOUND');
      assert.ok((await store.listRuns({ apiKeyId: 'key_runs', limit: 10 })).some((r) => r.id === id));
      assert.deepEqual(await store.listRuns({ apiKeyId: 'key_nobody', limit: 10 }), []);
    });

    it('keeps the agent token only as a SHA-256 hex hash', async () => {
      const id = (await create()).id;
      assert.equal(await store.getAgentTokenHash(id), null);
      const hash = 'ab'.repeat(32);
      await store.setAgentTokenHash(id, hash);
      assert.equal(await store.getAgentTokenHash(id), hash);
      await store.setAgentTokenHash(id, 'cd'.repeat(32));
      assert.equal(await store.getAgentTokenHash(id), 'cd'.repeat(32), 'a later token replaces the earlier one');
      await assert.rejects(store.setAgentTokenHash(id, 'the-token-itself-0123456789'), 'only a hex SHA-256 fits the column');
      assert.equal(await store.getAgentTokenHash(id), 'cd'.repeat(32));
      await expectAppError(store.setAgentTokenHash(newSessionId(), hash), 'SESSION_NOT_FOUND');
      assert.equal(await store.getAgentTokenHash(newSessionId()), null);
    });

    // ---- nodes: the catalog of hosts (more than one host: docs/ARCHITECTURE.md, "Nodes") ----

    const registration = (id: string, extra: { capacity?: number; leaseMs?: number; newGeneration?: boolean } = {}) => ({
      id,
      url: `http://${id}.test:8481`,
      capacity: extra.capacity ?? 2,
      leaseMs: extra.leaseMs ?? 60_000,
      newGeneration: extra.newGeneration ?? false,
      lostDetail: `${id} fenced itself`,
    });
    const placed = (only?: string) => store.createSession({ id: newSessionId(), provider: null, userId: null, placement: only === undefined ? {} : { only } });

    it('places 10 concurrent creates on three nodes of capacity 2: six placed, spread 2/2/2, four refused NO_CAPACITY', async () => {
      const ids = ['place-a', 'place-b', 'place-c'];
      for (const id of ids) await store.registerNode(registration(id));
      const results = await Promise.allSettled(Array.from({ length: 10 }, () => placed()));
      const sessions = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      assert.equal(sessions.length, 6);
      for (const r of results) if (r.status === 'rejected') assert.ok(r.reason instanceof AppError && r.reason.code === 'NO_CAPACITY', String(r.reason));
      const perNode = new Map<string, number>();
      for (const session of sessions) perNode.set(session.node?.id ?? 'none', (perNode.get(session.node?.id ?? 'none') ?? 0) + 1);
      assert.deepEqual(
        [...perNode.entries()].sort(),
        ids.map((id) => [id, 2]),
      );
      const nodes = (await store.listNodes()).filter((n) => ids.includes(n.id));
      assert.deepEqual(
        nodes.map((n) => [n.id, n.load, n.state, n.generation]),
        ids.map((id) => [id, 2, 'active', 1]),
      );
      // Out of the way of the tests below, which place on nodes of their own.
      for (const id of ids) await store.setNodeDraining(id, true, 'test over');
    });

    it('never places on a draining node, nor on one whose heartbeat is older than its lease; undrain brings it back', async () => {
      await store.registerNode(registration('drained', { capacity: 5 }));
      assert.equal((await store.setNodeDraining('drained', true, 'maintenance'))?.state, 'draining');
      const refused = await expectAppError(placed('drained'), 'NO_CAPACITY');
      const nodes = (refused.details?.nodes ?? []) as { id: string; state: string }[];
      assert.equal(nodes.find((n) => n.id === 'drained')?.state, 'draining');
      // A restart keeps an operator's drain.
      assert.equal((await store.registerNode(registration('drained', { capacity: 5 }))).node.state, 'draining');
      assert.equal((await store.setNodeDraining('drained', false))?.state, 'active');
      assert.equal((await placed('drained')).node?.id, 'drained');
      assert.equal(await store.setNodeDraining('no-such-node', true), null);

      await store.registerNode(registration('stale', { leaseMs: 1_000 }));
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      await expectAppError(placed('stale'), 'NO_CAPACITY');
      assert.ok(await store.heartbeatNode({ nodeId: 'stale', generation: 1 }));
      assert.equal((await placed('stale')).node?.id, 'stale');
    });

    it('reaps a node past its lease: dead, generation bumped, its live sessions failed NODE_LOST with their events; its old generation is fenced', async () => {
      await store.registerNode(registration('doomed', { leaseMs: 1_000, capacity: 5 }));
      const beat = () => store.heartbeatNode({ nodeId: 'doomed', generation: 1 });
      const starting = await placed('doomed');
      await beat();
      const ready = await move(await placed('doomed'), 'ready');
      await beat();
      const done = await move(await move(await placed('doomed'), 'ready'), 'completed');
      await beat();
      assert.deepEqual(starting.node, { id: 'doomed', generation: 1 });
      const lock = await store.tryReaperLock();
      assert.ok(lock, 'the reaper lock');
      try {
        assert.deepEqual(await lock.reap(() => 'unused'), [], 'a node inside its lease is not reaped');
        await new Promise((resolve) => setTimeout(resolve, 1_100));
        const reaped = await lock.reap((node) => `${node.id} is gone after ${node.heartbeatAgeMs} ms`);
        const mine = reaped.find((r) => r.node.id === 'doomed');
        assert.ok(mine);
        assert.deepEqual([...mine.failed].sort(), [starting.id, ready.id].sort());
        assert.equal(mine.node.state, 'dead');
        assert.equal(mine.node.generation, 2);
        assert.deepEqual(await lock.reap(() => 'unused'), [], 'reaped once');
      } finally {
        await lock.release();
      }
      for (const session of [starting, ready]) {
        const failed = await store.getSession(session.id);
        assert.equal(failed?.state, 'failed');
        assert.equal(failed?.reason, 'NODE_LOST');
        assert.match(failed?.detail ?? '', /^doomed is gone after \d+ ms$/);
        const events = await store.listEvents(session.id);
        assert.deepEqual(
          { type: events.at(-1)?.type, from: events.at(-1)?.from, reason: events.at(-1)?.reason },
          { type: 'session.failed', from: session.state, reason: 'NODE_LOST' },
        );
      }
      assert.equal((await store.getSession(done.id))?.state, 'completed', 'a finished session stays as it was');
      assert.equal(await store.heartbeatNode({ nodeId: 'doomed', generation: 1 }), null, 'the old generation is fenced');
      // Back as generation 3 (the reaper's bump and its own): a restart of a dead node is a new generation.
      const back = await store.registerNode(registration('doomed', { leaseMs: 1_000 }));
      assert.deepEqual([back.node.state, back.node.generation, back.failed], ['active', 3, []]);
    });

    it('refuses a node’s change under a generation it no longer has (NODE_FENCED); a new generation fails its old live sessions', async () => {
      const first = (await store.registerNode(registration('fenced'))).node;
      const session = await placed('fenced');
      const fence = { nodeId: 'fenced', generation: first.generation };
      const wrong = { nodeId: 'fenced', generation: first.generation + 7 };
      await expectAppError(
        store.transition(session.id, { from: 'starting', to: 'ready', expectVersion: session.version, reason: null, fence: wrong }),
        'NODE_FENCED',
      );
      const moved = await store.transition(session.id, { from: 'starting', to: 'ready', expectVersion: session.version, reason: null, fence });
      assert.equal(moved.state, 'ready');
      // A restart that is not a fence keeps the generation (and so its sessions).
      assert.equal((await store.registerNode(registration('fenced'))).node.generation, first.generation);
      const again = await store.registerNode(registration('fenced', { newGeneration: true }));
      assert.equal(again.node.generation, first.generation + 1);
      assert.deepEqual(again.failed, [session.id]);
      const lost = await store.getSession(session.id);
      assert.deepEqual([lost?.state, lost?.reason, lost?.detail], ['failed', 'NODE_LOST', 'fenced fenced itself']);
      await expectAppError(
        store.transition(session.id, { from: 'failed', to: 'ended', expectVersion: lost?.version ?? 0, reason: 'user', fence }),
        'SESSION_STATE_CONFLICT',
      );
      // A node's listing: its own sessions and those from before nodes, none of another node's.
      const listed = await store.listSessions({ nodeId: 'fenced' });
      assert.ok(listed.some((s) => s.id === session.id));
      assert.deepEqual(
        listed.filter((s) => s.node !== null && s.node.id !== 'fenced'),
        [],
      );
    });

    it('lets exactly one of 10 concurrent transitions from the same version win', async () => {
      const session = await create();
      const targets: SessionState[] = ['ready', 'failed', 'ended'];
      const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => move(session, targets[i % targets.length]!)));
      const won = results.filter((r) => r.status === 'fulfilled');
      const lost = results.filter((r) => r.status === 'rejected');
      assert.equal(won.length, 1);
      for (const r of lost) {
        assert.ok(r.reason instanceof AppError && r.reason.code === 'SESSION_STATE_CONFLICT', String(r.reason));
      }
      const winner = won[0]!.value;
      assert.equal(winner.version, 2);
      assert.deepEqual(await store.getSession(session.id), winner);
      const events = await store.listEvents(session.id);
      assert.deepEqual(
        events.map((e) => e.type),
        ['session.created', `session.${winner.state}`],
      );
    });
  });
}
