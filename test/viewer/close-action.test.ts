import assert from 'node:assert/strict';
import { test } from 'node:test';
import { closeCodeOf, type ErrorCode } from '../../src/protocol/errors.js';
import { closeAction, isWorthDiagnosing } from '../../src/viewer/lib/sentences.js';

// What the viewer does after its WebSocket closed, by the close the server sends for each code
// (4000 + the registry's status, reason = the code), so a status changed in the registry is followed.
const origin = 'https://porthole.example';
const closeBy = (code: ErrorCode) => closeAction(closeCodeOf(code), code, origin);

test('1000 completed: read the session to say who is connected, never reconnect', () => {
  assert.deepEqual(closeAction(1000, 'completed', origin), { kind: 'completed' });
});

test('the session is over: read it to say why', () => {
  for (const code of ['SESSION_ENDED', 'SESSION_EXPIRED'] as const) {
    assert.deepEqual(closeBy(code), { kind: 'read-session', fallback: 'The session has ended.' }, code);
  }
  assert.deepEqual(closeBy('SESSION_FAILED'), { kind: 'read-session', fallback: 'The session failed.' });
});

test('nothing to retry: a final sentence', () => {
  const cannotShow = 'This session cannot be shown';
  assert.deepEqual(closeBy('SESSION_NOT_FOUND'), { kind: 'final', phase: 'closed', title: cannotShow, sentence: 'This session does not exist.' });
  for (const code of ['TICKET_EXPIRED', 'TICKET_INVALID', 'TICKET_MISSING'] as const) {
    const action = closeBy(code);
    assert.equal(action.kind, 'final', code);
    assert.ok(action.kind === 'final' && action.phase === 'closed' && /viewer link/.test(action.sentence), code);
  }
  const wrong = closeBy('TICKET_WRONG_SESSION');
  assert.ok(wrong.kind === 'final' && wrong.sentence === 'This viewer link belongs to another session.');
  const origin403 = closeBy('ORIGIN_NOT_ALLOWED');
  assert.ok(origin403.kind === 'final' && origin403.sentence.includes(origin) && origin403.sentence.includes('PORTHOLE_ALLOWED_ORIGINS'));
});

test('possibly passing: reconnect, saying why meanwhile', () => {
  assert.deepEqual(closeBy('SESSION_NOT_READY'), { kind: 'retry', cause: 'The desktop is still starting' });
  assert.deepEqual(closeBy('SANDBOX_UNREACHABLE'), { kind: 'retry', cause: 'The sandbox’s desktop does not answer' });
  assert.deepEqual(closeBy('BOOT_TIMEOUT'), { kind: 'retry', cause: 'The sandbox did not become ready in time' });
  assert.deepEqual(closeBy('SERVER_SHUTTING_DOWN'), { kind: 'retry', cause: 'The porthole server is shutting down' });
  assert.deepEqual(closeBy('SESSION_IDLE_TIMEOUT'), { kind: 'retry', cause: 'The session ended because no viewer was connected for too long' });
  assert.deepEqual(closeAction(1006, '', origin), { kind: 'retry', cause: 'Connection lost' });
  assert.deepEqual(closeAction(4999, 'SOMETHING_NEW', origin), { kind: 'retry', cause: 'The connection was closed (code 4999, SOMETHING_NEW)' });
});

test('a failure or a drop is worth a diagnosis; an ending is not', () => {
  assert.ok(isWorthDiagnosing(1006, ''));
  assert.ok(isWorthDiagnosing(closeCodeOf('SANDBOX_UNREACHABLE'), 'SANDBOX_UNREACHABLE'));
  assert.equal(isWorthDiagnosing(1000, 'completed'), false);
  for (const code of ['SESSION_NOT_READY', 'SESSION_IDLE_TIMEOUT', 'SESSION_ENDED', 'SESSION_EXPIRED', 'SESSION_FAILED', 'SERVER_SHUTTING_DOWN'] as const) {
    assert.equal(isWorthDiagnosing(closeCodeOf(code), code), false, code);
  }
});
