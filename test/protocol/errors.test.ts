import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { closeCodeOf, errorCodes, errorRegistry } from '../../src/protocol/errors.js';

const doc = await readFile(new URL('../../../docs/errors.md', import.meta.url), 'utf8');
const rows = new Map(
  [...doc.matchAll(/^\| `([A-Z_]+)` \| (\d+) \| (\d+) \| (.+) \|$/gm)].map((m) => [m[1], { status: Number(m[2]), close: Number(m[3]), text: m[4] ?? '' }]),
);

test('every error code is documented in docs/errors.md with its status and close code', () => {
  for (const code of errorCodes) {
    const row = rows.get(code);
    assert.ok(row, `${code} is missing from docs/errors.md`);
    assert.equal(row.status, errorRegistry[code].status, `${code}: documented status`);
    assert.equal(row.close, closeCodeOf(code), `${code}: documented close code`);
    assert.ok(row.text.length > 20, `${code}: the doc says what it means`);
  }
});

test('docs/errors.md documents no code the registry lacks', () => {
  for (const code of rows.keys()) assert.ok(errorCodes.includes(code as never), `${code} is documented but not in the registry`);
});

test('close codes are valid application codes (4000–4999), never 1005/1006', () => {
  for (const code of errorCodes) {
    const close = closeCodeOf(code);
    assert.ok(close >= 4000 && close <= 4999, `${code} → ${close}`);
    assert.ok(Buffer.byteLength(code) <= 123, `${code} fits a close reason`);
  }
});

test('codes are SCREAMING_SNAKE and statuses are 4xx/5xx', () => {
  for (const code of errorCodes) {
    assert.match(code, /^[A-Z][A-Z_]*[A-Z]$/);
    assert.ok(errorRegistry[code].status >= 400 && errorRegistry[code].status < 600);
  }
});
