import assert from 'node:assert/strict';
import { test } from 'node:test';
import { closeCodeOf, errorRegistry, type ErrorCode } from '../../src/protocol/errors.js';
import { Catalogue, type Phrase } from '../../src/viewer/lib/catalogue.js';
import { closeAction, isWorthDiagnosing, namingHost, retryingPhrase, sessionNotice } from '../../src/viewer/lib/sentences.js';

// What the viewer does after its WebSocket closed, by the close the server sends for each code
// (4000 + the registry's status, reason = the code), so a status changed in the registry is followed.
const origin = 'https://porthole.example';
const closeBy = (code: ErrorCode) => closeAction(closeCodeOf(code), code, origin);

const catalogue = new Catalogue();
const format = (said: Phrase) => catalogue.format(said);

test('1000 completed: read the session to say who is connected, never reconnect', () => {
  assert.deepEqual(closeAction(1000, 'completed', origin), { kind: 'completed' });
});

test('the session is over: read it to say why', () => {
  for (const code of ['SESSION_ENDED', 'SESSION_EXPIRED'] as const) {
    const action = closeBy(code);
    assert.ok(action.kind === 'read-session', code);
    assert.equal(format(action.fallback.person), 'The session has ended.', code);
  }
  const failed = closeBy('SESSION_FAILED');
  assert.ok(failed.kind === 'read-session' && failed.phase === 'failed' && !failed.isFinal);
  assert.equal(failed.fallback.person.key, 'failed.generic');
});

test('the session’s machine was lost (4424 NODE_LOST) or fenced (4409 NODE_FENCED): read the record to name it, never reconnect', () => {
  for (const code of ['NODE_LOST', 'NODE_FENCED'] as const) {
    const action = closeBy(code);
    assert.ok(action.kind === 'read-session' && action.phase === 'failed' && action.isFinal, code);
    assert.equal(
      format(action.fallback.person),
      'The machine running this desktop stopped answering, and the desktop was lost with it. Start again to sign in.',
      code,
    );
    assert.match(action.fallback.operator ?? '', new RegExp(`${closeCodeOf(code)} ${code}`));
  }
  assert.deepEqual(closeAction(4409, 'SESSION_NOT_READY', origin).kind, 'retry', '4409 SESSION_NOT_READY still waits for the desktop');
  // The record read after the close names the machine, from the session's `node` (the reaper's detail is the operator's).
  const detail = 'The host node-b (http://10.0.0.12:8481) stopped answering: no heartbeat for 15.4 s, past its 15 s lease.';
  const said = sessionNotice({ state: 'failed', reason: 'NODE_LOST', detail, node: { id: 'node-b' } }, { isFramed: false });
  assert.equal(format(said.person), 'The machine running this desktop (node-b) stopped answering, and the desktop was lost with it. Start again to sign in.');
  assert.equal(said.operator, `NODE_LOST: ${errorRegistry.NODE_LOST.message} ${detail}`);
});

test('the edge cannot reach the session’s machine (4502 NODE_UNREACHABLE): reconnect, saying the machine is not answering, by name once known', () => {
  const action = closeBy('NODE_UNREACHABLE');
  assert.ok(action.kind === 'retry');
  assert.equal(format(retryingPhrase(action.cause, 2_000)), 'The machine running this desktop is not answering. Trying again in 2 s…');
  assert.match(action.cause.operator, /4502 NODE_UNREACHABLE/);
  const named = namingHost(action.cause, 'node-b');
  assert.equal(format(retryingPhrase(named, 4_000)), 'The machine running this desktop (node-b) is not answering. Trying again in 4 s…');
  const desktop = closeBy('SANDBOX_UNREACHABLE');
  assert.ok(desktop.kind === 'retry');
  assert.equal(namingHost(desktop.cause, 'node-b').retryKey, 'desktop.unreachable.retrying', 'only the machine’s own sentence is named');
  assert.ok(isWorthDiagnosing(closeCodeOf('NODE_UNREACHABLE'), 'NODE_UNREACHABLE'), 'the diagnosis names the hop and the errno');
});

test('nothing to retry: a final sentence for the person, the code and the cure for the operator', () => {
  const notFound = closeBy('SESSION_NOT_FOUND');
  assert.ok(notFound.kind === 'final' && notFound.phase === 'closed');
  assert.equal(notFound.title.key, 'title.cannotShow');
  assert.match(format(notFound.notice.person), /^This session does not exist/);
  assert.match(notFound.notice.operator ?? '', /4404 SESSION_NOT_FOUND/);
  for (const code of ['TICKET_EXPIRED', 'TICKET_INVALID', 'TICKET_MISSING'] as const) {
    const action = closeBy(code);
    assert.ok(action.kind === 'final' && action.phase === 'closed' && /viewer link/.test(format(action.notice.person)), code);
    assert.ok(action.notice.operator?.includes(code), `${code} is in the operator's line`);
  }
  const wrong = closeBy('TICKET_WRONG_SESSION');
  assert.ok(wrong.kind === 'final' && format(wrong.notice.person) === 'This viewer link belongs to another session.');
  const origin403 = closeBy('ORIGIN_NOT_ALLOWED');
  assert.ok(origin403.kind === 'final');
  // The person learns the page may not show the desktop; the origin and the setting are for the operator.
  assert.equal(format(origin403.notice.person), 'This page is not allowed to show the desktop. Contact the app’s support.');
  assert.ok(origin403.notice.operator?.includes(origin) && origin403.notice.operator.includes('PORTHOLE_ALLOWED_ORIGINS'));
});

test('possibly passing: reconnect, saying why in plain words meanwhile', () => {
  const retry = (action: ReturnType<typeof closeAction>) => {
    assert.equal(action.kind, 'retry');
    return action.kind === 'retry' ? action.cause : { retryKey: 'connection.lost.retrying' as const, operator: '' };
  };
  assert.equal(retry(closeBy('SESSION_NOT_READY')).retryKey, 'desktop.starting.retrying');
  assert.equal(retry(closeBy('SANDBOX_UNREACHABLE')).retryKey, 'desktop.unreachable.retrying');
  assert.equal(retry(closeBy('AGENT_UNHEALTHY')).retryKey, 'desktop.unreachable.retrying');
  assert.equal(retry(closeBy('BOOT_TIMEOUT')).retryKey, 'desktop.slow.retrying');
  assert.equal(retry(closeBy('SERVER_SHUTTING_DOWN')).retryKey, 'service.restarting.retrying');
  assert.equal(retry(closeAction(1006, '', origin)).retryKey, 'connection.lost.retrying');
  const unknown = retry(closeAction(4999, 'SOMETHING_NEW', origin));
  assert.equal(unknown.retryKey, 'connection.lost.retrying');
  assert.equal(unknown.operator, 'The connection closed with 4999 SOMETHING_NEW.');
  const unreachable = retry(closeBy('SANDBOX_UNREACHABLE'));
  assert.equal(format(retryingPhrase(unreachable, 2_500)), 'The desktop is not answering. Trying again in 3 s…');
  assert.match(unreachable.operator, /4502 SANDBOX_UNREACHABLE/, 'the code stays for the operator');
});

test('a failure or a drop is worth a diagnosis; an ending is not', () => {
  assert.ok(isWorthDiagnosing(1006, ''));
  assert.ok(isWorthDiagnosing(closeCodeOf('SANDBOX_UNREACHABLE'), 'SANDBOX_UNREACHABLE'));
  assert.equal(isWorthDiagnosing(1000, 'completed'), false);
  for (const code of [
    'SESSION_NOT_READY',
    'SESSION_IDLE_TIMEOUT',
    'SESSION_ENDED',
    'SESSION_EXPIRED',
    'SESSION_FAILED',
    'SERVER_SHUTTING_DOWN',
    'NODE_LOST',
    'NODE_FENCED',
  ] as const) {
    assert.equal(isWorthDiagnosing(closeCodeOf(code), code), false, code);
  }
});
