import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Redactor, redactedMark, secretsOf } from '../../src/server/runs/redactor.js';

const refresh = 'rt-0123456789abcdefghijkl';
const access = 'at-zyxwvutsrqponmlkjihgfe';
const file = JSON.stringify({ claudeAiOauth: { accessToken: access, refreshToken: refresh, expiresAt: 1, scopes: ['user:inference'] }, token_type: 'Bearer' });

test('the secrets of a credential file are its token-like values, at any depth; short values and other keys are not', () => {
  assert.deepEqual(secretsOf(file).sort(), [access, refresh].sort());
  assert.deepEqual(secretsOf('not json', null), []);
});

test('a secret is redacted whole, even split across chunks at every position; other output passes unchanged', () => {
  const text = `before ${refresh} middle ${access} after`;
  for (let cut = 0; cut <= text.length; cut++) {
    const redactor = new Redactor(secretsOf(file));
    const out = redactor.push(text.slice(0, cut)) + redactor.push(text.slice(cut)) + redactor.flush();
    assert.equal(out, `before ${redactedMark} middle ${redactedMark} after`, `cut at ${cut}`);
  }
  const plain = new Redactor(secretsOf(file));
  assert.equal(plain.push('rt-0 is not a token\n'), 'rt-0 is not a token\n', 'nothing held back once it cannot be a secret');
  const partial = new Redactor(secretsOf(file));
  assert.equal(partial.push('ends with rt-0123'), 'ends with ', 'a possible start is held back');
  assert.equal(partial.flush(), 'rt-0123', 'and given out at the end');
});
