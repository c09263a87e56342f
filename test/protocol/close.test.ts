import assert from 'node:assert/strict';
import { test } from 'node:test';
import { closeFor, completedClose, endingCodeOf, isCompletedClose } from '../../src/protocol/close.js';
import { closeCodeOf } from '../../src/protocol/errors.js';
import { endReasons, sessionStates, type SessionState } from '../../src/protocol/session.js';

// The close-code table, pinned: viewers, their tests and docs/ARCHITECTURE.md's timeout table read
// these numbers; a change here is a change of the wire.

const table: Array<[state: SessionState, reason: string | null, close: { code: number; reason: string } | null]> = [
  ['starting', null, { code: 4409, reason: 'SESSION_NOT_READY' }],
  ['ready', null, null],
  ['authenticating', null, null],
  ['completed', 'credentials_captured', { code: 1000, reason: 'completed' }],
  ['failed', 'BOOT_TIMEOUT', { code: 4410, reason: 'SESSION_FAILED' }],
  ['failed', 'CREDENTIAL_UNVERIFIED', { code: 4410, reason: 'SESSION_FAILED' }],
  ['failed', 'SANDBOX_LIMIT_REACHED', { code: 4410, reason: 'SESSION_FAILED' }],
  ['ended', 'user', { code: 4410, reason: 'SESSION_ENDED' }],
  ['ended', 'sandbox_exited', { code: 4410, reason: 'SESSION_ENDED' }],
  ['ended', 'shutdown', { code: 4410, reason: 'SESSION_ENDED' }],
  ['ended', 'idle_timeout', { code: 4408, reason: 'SESSION_IDLE_TIMEOUT' }],
  ['ended', 'max_lifetime', { code: 4410, reason: 'SESSION_EXPIRED' }],
  ['ended', null, { code: 4410, reason: 'SESSION_ENDED' }],
];

test('closeFor: each session state and ending closes its viewers with its own code and reason', () => {
  for (const [state, reason, close] of table) {
    assert.deepEqual(closeFor({ state, reason }), close, `${state} (${reason ?? 'no reason'})`);
  }
});

test('the table covers every state and every end reason', () => {
  for (const state of sessionStates)
    assert.ok(
      table.some(([s]) => s === state),
      `${state} is in the table`,
    );
  for (const reason of endReasons)
    assert.ok(
      table.some(([s, r]) => s === 'ended' && r === reason),
      `ended (${reason}) is in the table`,
    );
});

test('an error close is 4000 + the registry status, with the error code as reason', () => {
  for (const [state, reason] of table) {
    const close = closeFor({ state, reason });
    if (close === null || close.reason === 'completed') continue;
    assert.equal(close.code, closeCodeOf(close.reason), `${close.reason}`);
  }
});

test('endingCodeOf: only a session that ended without completing has one', () => {
  assert.equal(endingCodeOf({ state: 'failed', reason: 'idle_timeout' }), 'SESSION_FAILED');
  assert.equal(endingCodeOf({ state: 'ended', reason: 'max_lifetime' }), 'SESSION_EXPIRED');
  for (const state of ['starting', 'ready', 'authenticating', 'completed'] as const) assert.equal(endingCodeOf({ state, reason: null }), null, state);
});

test('the codes the relay sends on its own are pinned too', () => {
  assert.deepEqual(completedClose, { code: 1000, reason: 'completed' });
  assert.ok(isCompletedClose(1000, 'completed'));
  assert.ok(!isCompletedClose(1000, ''));
  assert.equal(closeCodeOf('SESSION_NOT_FOUND'), 4404);
  assert.equal(closeCodeOf('SANDBOX_UNREACHABLE'), 4502);
  assert.equal(closeCodeOf('SERVER_SHUTTING_DOWN'), 4503);
  assert.equal(closeCodeOf('BOOT_TIMEOUT'), 4504);
  assert.equal(closeCodeOf('TICKET_INVALID'), 4401);
  assert.equal(closeCodeOf('ORIGIN_NOT_ALLOWED'), 4403);
});
