import assert from 'node:assert/strict';
import { test } from 'node:test';
import { diagnosisHops, type SessionDiagnosis } from '../../src/protocol/diagnosis.js';
import { closeCodeOf, errorCodes, errorRegistry } from '../../src/protocol/errors.js';
import { endReasons, startSteps } from '../../src/protocol/session-states.js';
import { Catalogue, englishDefaults, fillTemplate, isPhraseKey, phrase, type Phrase } from '../../src/viewer/lib/catalogue.js';
import { diagnosedCause } from '../../src/viewer/lib/diagnosis-report.js';
import { ApiError } from '../../src/viewer/lib/api-client.js';
import { refusalOf, retryableCause } from '../../src/viewer/lib/request-failure.js';
import { closeAction, completedNotice, endedNotice, failedNotice, retryingPhrase, sessionNotice, ticketNotice } from '../../src/viewer/lib/sentences.js';

// The viewer's words for the person signing in (issue 10, item 7): every sentence has a key and an
// English default, an app's own templates replace them, and no sentence the person sees for any
// error carries what only the operator can use — a code, a hop, a path, an errno.

const catalogue = new Catalogue();
const format = (said: Phrase) => catalogue.format(said);

/** What must never reach the person's sentence. */
function assertForThePerson(sentence: string, what: string): void {
  for (const code of errorCodes) assert.ok(!sentence.includes(code), `${what}: "${sentence}" names ${code}`);
  assert.doesNotMatch(sentence, /\b[A-Z]{2,}_[A-Z_]+\b/, `${what}: "${sentence}" has an error-code-like word`);
  assert.doesNotMatch(sentence, /EAGAIN|lstat|ENOENT|ECONNREFUSED|ECONNRESET|SIGKILL|errno/i, `${what}: "${sentence}"`);
  assert.doesNotMatch(sentence, /(^|\s)(\/|…\/|\.\/)[\w.-]+\//, `${what}: "${sentence}" has a path`);
  assert.doesNotMatch(sentence, /\.sock\b|sbx_|ses_|\b4\d{3}\b|\b5\d{2}\b/, `${what}: "${sentence}"`);
  assert.doesNotMatch(sentence, /\b(vnc|agent|relay|store|driver)\b:/i, `${what}: "${sentence}" names a hop`);
  assert.doesNotMatch(sentence, /PORTHOLE_|\{[a-z]+\}/i, `${what}: "${sentence}" has a setting or an unfilled placeholder`);
}

test('every key has an English default, and the defaults themselves are for the person', () => {
  const keys = Object.keys(englishDefaults);
  assert.ok(keys.length > 40);
  for (const key of keys) {
    assert.ok(isPhraseKey(key));
    const template = englishDefaults[key as keyof typeof englishDefaults];
    assert.equal(typeof template, 'string', key);
    assert.ok(template.trim().length > 0, `${key} has an English default`);
    if (key !== 'label.details')
      assertForThePerson(
        fillTemplate(template, { seconds: 3, provider: 'Claude Code', account: 'a@b.example', step: 'x', count: 2, size: '4.9', limit: 4, host: 'node-a' }),
        key,
      );
  }
  for (const step of startSteps) assert.ok(isPhraseKey(`step.${step}`), `start step ${step} has the person's words`);
  for (const reason of endReasons) assert.ok(isPhraseKey(`ended.${reason}`), `end reason ${reason} has a sentence`);
});

test('no person-facing sentence for any error code carries the code, a path or an errno', () => {
  const detail = 'boot timed out: lstat /var/lib/porthole/sbx_abc/run/vnc.sock: ENOENT (EAGAIN)';
  for (const code of errorCodes) {
    // As a session's failure (the server's detail rides along, for the operator only).
    const failed = failedNotice(code, detail);
    assertForThePerson(format(failed.person), `failed ${code}`);
    assert.ok(failed.operator?.includes(code) && failed.operator.includes('lstat'), `the operator keeps ${code} and its detail`);
    assertForThePerson(format(sessionNotice({ state: 'failed', reason: code, detail }, { isFramed: false }).person), `session failed ${code}`);
    // As a close of the viewer's connection.
    const action = closeAction(closeCodeOf(code), code, 'https://app.example');
    const person =
      action.kind === 'final'
        ? action.notice.person
        : action.kind === 'retry'
          ? retryingPhrase(action.cause, 3_000)
          : action.kind === 'read-session'
            ? action.fallback.person
            : phrase('completed.plain');
    assertForThePerson(format(person), `close ${code}`);
    // As an API refusal, or a retryable API failure.
    const error = new ApiError(errorRegistry[code].status, code, `${errorRegistry[code].message} ${detail}`, 'req_1');
    if (errorRegistry[code].status < 500) assertForThePerson(format(refusalOf(error).notice.person), `refusal ${code}`);
    else assertForThePerson(format(retryingPhrase(retryableCause(error), 2_000)), `retry ${code}`);
    assertForThePerson(format(ticketNotice(code).person), `ticket ${code}`);
  }
  for (const reason of [...endReasons, null, 'something_new']) assertForThePerson(format(endedNotice(reason).person), `ended ${reason}`);
});

test('a diagnosis: the person hears the desktop does not answer; the hop, errno and path are the operator’s', () => {
  for (const hop of diagnosisHops) {
    const diagnosis: SessionDiagnosis = {
      sessionId: 'ses_1',
      state: 'authenticating',
      serverVersion: '0.1.0',
      at: new Date().toISOString(),
      ms: 12,
      hops: [{ hop: 'node', result: hop === 'node' ? 'failed' : 'ok', ms: 1, cause: '…', code: null, details: { nodeId: 'node-a' } }],
      firstFailure: { hop, code: 'SANDBOX_UNREACHABLE', cause: 'EAGAIN on …/sbx_1/run/vnc.sock' },
      egress: { allowed: 0, refused: [] },
    };
    const cause = diagnosedCause(diagnosis);
    assert.ok(cause);
    const sentence = format(retryingPhrase(cause, 3_000));
    // The node hop is the machine the desktop runs on: the person hears that one, by name.
    assert.equal(
      sentence,
      hop === 'node'
        ? 'The machine running this desktop (node-a) is not answering. Trying again in 3 s…'
        : 'The desktop is not answering. Trying again in 3 s…',
    );
    assertForThePerson(sentence, `hop ${hop}`);
    assert.match(cause.operator, new RegExp(`\\(${hop}: EAGAIN on …/sbx_1/run/vnc\\.sock\\)$`));
  }
});

test('an app’s templates replace the defaults, with their placeholders; unknown keys and non-strings are ignored', () => {
  const own = new Catalogue();
  const ignored = own.override({
    'desktop.unreachable.retrying': 'Der Desktop antwortet nicht. Neuer Versuch in {seconds} s…',
    'no.such.key': 'x',
    'label.paste': 42,
  });
  assert.deepEqual(ignored, ['no.such.key', 'label.paste']);
  assert.equal(own.format(phrase('desktop.unreachable.retrying', { seconds: 4 })), 'Der Desktop antwortet nicht. Neuer Versuch in 4 s…');
  assert.equal(own.format(phrase('label.paste')), 'Paste', 'the default stays where nothing valid came');
  assert.deepEqual(own.override({ 'label.end': 'x'.repeat(501) }), ['label.end'], 'a template is a sentence, not a page');
  assert.equal(fillTemplate('{a} and {b}', { a: 1 }), '1 and {b}', 'a placeholder without a value shows as written');
});

test('the operator’s line of a failure: the code, its message once, the server’s detail', () => {
  assert.equal(
    failedNotice('CREDENTIAL_UNVERIFIED', 'The credential did not verify with the provider: the demo provider refused the access token at userinfo (401).')
      .operator,
    'CREDENTIAL_UNVERIFIED: The credential did not verify with the provider: the demo provider refused the access token at userinfo (401).',
  );
  assert.equal(
    failedNotice('BOOT_TIMEOUT', 'vnc: lstat …/run/vnc.sock: ENOENT').operator,
    'BOOT_TIMEOUT: The sandbox did not become ready in time. vnc: lstat …/run/vnc.sock: ENOENT',
  );
  assert.equal(failedNotice('BOOT_TIMEOUT', null).operator, 'BOOT_TIMEOUT: The sandbox did not become ready in time.');
  assert.equal(failedNotice(null, null).operator, 'The session failed.');
  assert.equal(failedNotice('SOMETHING_NEW', 'it broke').operator, 'SOMETHING_NEW: it broke');
});

test('the completed sentence: on its own page the person may close it; framed in an app’s page, it says who is connected and stops', () => {
  const credential = { provider: 'demo', account: 'demo@porthole.test', capturedAt: '2026-11-27T18:01:00.000Z', verification: 'verified' };
  const records = {
    account: { provider: 'demo', credential },
    provider: { provider: 'demo', credential: { ...credential, account: null } },
    plain: {},
  };
  const said = (record: object, isFramed: boolean) => {
    const { person } = completedNotice(record, { isFramed });
    return [person.key, format(person)];
  };
  assert.deepEqual(said(records.account, false), ['completed.account', 'Connected to porthole demo as demo@porthole.test. You can close this page.']);
  assert.deepEqual(said(records.provider, false), ['completed.provider', 'Connected to porthole demo. You can close this page.']);
  assert.deepEqual(said(records.plain, false), ['completed.plain', 'Connected. You can close this page.']);
  assert.deepEqual(said(records.account, true), ['completed.framed.account', 'Connected to porthole demo as demo@porthole.test.']);
  assert.deepEqual(said(records.provider, true), ['completed.framed.provider', 'Connected to porthole demo.']);
  assert.deepEqual(said(records.plain, true), ['completed.framed.plain', 'Connected.']);
  // sessionNotice, for a page opened on a session already completed, asks the same.
  for (const isFramed of [false, true]) {
    const notice = sessionNotice({ state: 'completed', reason: null, detail: null, ...records.account }, { isFramed });
    assert.equal(notice.person.key, completedNotice(records.account, { isFramed }).person.key);
  }
  // No framed sentence, in any catalogue key, tells the person to close the page: the page is the app's.
  for (const key of Object.keys(englishDefaults).filter((k) => k.startsWith('completed.framed.'))) {
    assert.doesNotMatch(englishDefaults[key as keyof typeof englishDefaults], /close/i, key);
  }
  // An app replaces the framed words as any other.
  const own = new Catalogue();
  own.override({ 'completed.framed.account': 'Mit {provider} verbunden als {account}.' });
  assert.equal(own.format(completedNotice(records.account, { isFramed: true }).person), 'Mit porthole demo verbunden als demo@porthole.test.');
});
