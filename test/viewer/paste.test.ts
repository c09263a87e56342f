import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Catalogue } from '../../src/viewer/lib/catalogue.js';
import { checkPasteText, keysymFor, needsShift, pasteLimitBytes, typeText } from '../../src/viewer/lib/paste.js';

test('a pasted text loses its final line break and \\r; empty and oversized texts are refused', () => {
  assert.deepEqual(checkPasteText('123456\r\n'), { ok: true, text: '123456' });
  assert.deepEqual(checkPasteText('a\r\nb\rc\n'), { ok: true, text: 'a\nb\nc' });
  assert.deepEqual(checkPasteText('\n'), { ok: false, sentence: { key: 'paste.empty' } });
  assert.equal(checkPasteText('x'.repeat(pasteLimitBytes)).ok, true);
  const tooLong = checkPasteText('é'.repeat(pasteLimitBytes / 2 + 1));
  assert.ok(!tooLong.ok && new Catalogue().format(tooLong.sentence).startsWith('That text is 4.0 KiB'), 'counted in UTF-8 bytes');
});

test('keysyms: Latin-1 is the code point, other scripts X’s Unicode keysym, control characters none', () => {
  assert.equal(keysymFor('a'), 0x61);
  assert.equal(keysymFor('é'), 0xe9);
  assert.equal(keysymFor('€'), 0x010020ac);
  assert.equal(keysymFor('\n'), 0xff0d);
  assert.equal(keysymFor('\t'), 0xff09);
  assert.equal(keysymFor('\u0007'), null);
  assert.equal(keysymFor('\u0085'), null);
});

test('Shift is held for US-layout symbols and uppercase letters of any script', () => {
  for (const char of ['A', '@', '?', '~', 'É', 'Ж']) assert.ok(needsShift(char), char);
  for (const char of ['a', '2', '/', 'é', 'ж', 'ß', '€']) assert.equal(needsShift(char), false, char);
});

test('typing releases held modifiers, then sends each character with Shift around it when needed', async () => {
  const sent: [number, string | null, boolean | undefined][] = [];
  const typed = await typeText({ sendKey: (keysym, code, down) => void sent.push([keysym, code, down]) }, 'aB\u0001');
  assert.equal(typed, 2, 'the control character is skipped');
  const afterReleases = sent.slice(8);
  assert.ok(sent.slice(0, 8).every(([, , down]) => down === false));
  assert.deepEqual(afterReleases, [
    [0x61, null, undefined],
    [0xffe1, 'ShiftLeft', true],
    [0x42, null, undefined],
    [0xffe1, 'ShiftLeft', false],
  ]);
});
