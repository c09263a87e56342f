// The suite every Store passes (PGlite and PostgreSQL). Each test makes fresh sessions, so the
// tests share one store and one database.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AppError, type ErrorCode } from '../protocol/errors.js';
import { newSessionId, type SessionId } from '../protocol/ids.js';
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
import type { Store } from './store.js';

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
      store.transition(session.id as SessionId, {
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
      assert.deepEqual(await store.getSession(session.id as SessionId), session);
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
          reason: null,
          detail: null,
          sandboxId: null,
          version: 1,
          createdAt: undefined,
          updatedAt: undefined,
        },
      );
      assert.match(session.createdAt, isoTimestamp);
      assert.match(session.updatedAt, isoTimestamp);
      assert.deepEqual(await store.getSession(id), session);

      const events = await store.listEvents(id);
      assert.equal(events.length, 1);
      assert.deepEqual({ ...events[0], seq: 0, at: '' }, {
        seq: 0,
        sessionId: id,
        type: 'session.created',
        from: null,
        to: 'starting',
        reason: null,
        details: {},
        at: '',
      });

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
      assert.deepEqual(created, [...created].sort((x, y) => y - x));
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
          assert.deepEqual(await store.getSession(moved.id as SessionId), moved);
        }
      }
    });

    it('refuses a move that is not in the table and changes nothing', async () => {
      for (const from of sessionStates.filter((s) => !isTerminal(s))) {
        for (const to of sessionStates.filter((s) => !canTransition(from, s))) {
          const session = await sessionIn(from);
          await expectAppError(move(session, to), 'SESSION_STATE_CONFLICT');
          assert.deepEqual(await store.getSession(session.id as SessionId), session, `${from} → ${to}`);
        }
      }
    });

    it('keeps terminal states permanent', async () => {
      for (const state of terminalStates) {
        const session = await sessionIn(state);
        const id = session.id as SessionId;
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
      assert.deepEqual(await store.getSession(ready.id as SessionId), ready);
      assert.equal((await store.listEvents(ready.id as SessionId)).length, 2, 'a refused move writes no event');

      await expectAppError(
        store.transition(newSessionId(), { from: 'starting', to: 'ready', expectVersion: 1, reason: null }),
        'SESSION_NOT_FOUND',
      );
    });

    it('writes one event per transition with its from, to, reason and details', async () => {
      const session = await create();
      const id = session.id as SessionId;
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
      const id = session.id as SessionId;
      const started = await store.appendEvent(id, { type: 'step.started', details: { step: 'agent' } });
      await store.appendEvent(other.id as SessionId, { type: 'step.started' });
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

    it('sets the sandbox id of a live session', async () => {
      const session = await create();
      const updated = await store.setSandbox(session.id as SessionId, 'sbx_00000000000000000001');
      assert.equal(updated.sandboxId, 'sbx_00000000000000000001');
      assert.equal(updated.version, session.version + 1);
      assert.equal(updated.state, 'starting');
      assert.deepEqual(await store.getSession(session.id as SessionId), updated);
      await expectAppError(store.setSandbox(newSessionId(), 'sbx_x'), 'SESSION_NOT_FOUND');
    });

    it('stores API keys and finds them by hash', async () => {
      const count = await store.countApiKeys();
      const suffix = newSessionId().slice(4);
      const keyHash = `hash-${suffix}`;
      await store.addApiKey({ id: `key_${suffix}`, name: 'ci', keyHash });

      const found = await store.findApiKey(keyHash);
      assert.ok(found);
      assert.deepEqual({ ...found, createdAt: '' }, { id: `key_${suffix}`, name: 'ci', createdAt: '' });
      assert.match(found.createdAt, isoTimestamp);
      assert.equal(await store.countApiKeys(), count + 1);
      assert.equal(await store.findApiKey(`unknown-${suffix}`), null);
      await assert.rejects(store.addApiKey({ id: `key2_${suffix}`, name: 'dup', keyHash }), 'a hash is unique');
    });

    it('lets exactly one of 10 concurrent transitions from the same version win', async () => {
      const session = await create();
      const targets: SessionState[] = ['ready', 'failed', 'ended'];
      const results = await Promise.allSettled(
        Array.from({ length: 10 }, (_, i) => move(session, targets[i % targets.length]!)),
      );
      const won = results.filter((r) => r.status === 'fulfilled');
      const lost = results.filter((r) => r.status === 'rejected');
      assert.equal(won.length, 1);
      for (const r of lost) {
        assert.ok(r.reason instanceof AppError && r.reason.code === 'SESSION_STATE_CONFLICT', String(r.reason));
      }
      const winner = won[0]!.value;
      assert.equal(winner.version, 2);
      assert.deepEqual(await store.getSession(session.id as SessionId), winner);
      const events = await store.listEvents(session.id as SessionId);
      assert.deepEqual(
        events.map((e) => e.type),
        ['session.created', `session.${winner.state}`],
      );
    });
  });
}
