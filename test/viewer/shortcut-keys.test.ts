import assert from 'node:assert/strict';
import { test } from 'node:test';
import { letterKeysymInCase, shortcutStateOf } from '../../src/viewer/lib/shortcut-keys.js';

function keydown(held: { ctrl?: boolean; alt?: boolean; meta?: boolean; shift?: boolean; altGraph?: boolean; capsLock?: boolean }) {
  return {
    ctrlKey: held.ctrl ?? false,
    altKey: held.alt ?? false,
    metaKey: held.meta ?? false,
    shiftKey: held.shift ?? false,
    getModifierState: (key: string) => (key === 'AltGraph' ? (held.altGraph ?? false) : key === 'CapsLock' ? (held.capsLock ?? false) : false),
  };
}

test('a shortcut is Ctrl, Alt or Meta without Shift and without AltGr', () => {
  assert.deepEqual(shortcutStateOf(keydown({ ctrl: true })), { isShortcut: true, isCapsLockOn: false });
  assert.deepEqual(shortcutStateOf(keydown({ alt: true, capsLock: true })), { isShortcut: true, isCapsLockOn: true });
  assert.equal(shortcutStateOf(keydown({ meta: true })).isShortcut, true);
  assert.equal(shortcutStateOf(keydown({ ctrl: true, shift: true })).isShortcut, false, 'Ctrl+Shift+A is meant as typed');
  assert.equal(shortcutStateOf(keydown({ ctrl: true, alt: true, altGraph: true })).isShortcut, false, 'AltGr (Windows: Ctrl+Alt) types text');
  assert.equal(shortcutStateOf(keydown({ shift: true })).isShortcut, false);
  assert.equal(shortcutStateOf(keydown({})).isShortcut, false);
});

test('letters change case, in ASCII and Latin-1; every other keysym stays', () => {
  assert.equal(letterKeysymInCase(0x41, false), 0x61, 'A → a');
  assert.equal(letterKeysymInCase(0x61, true), 0x41, 'a → A');
  assert.equal(letterKeysymInCase(0x61, false), 0x61, 'a stays a');
  assert.equal(letterKeysymInCase(0x5a, false), 0x7a, 'Z → z');
  assert.equal(letterKeysymInCase(0xc9, false), 0xe9, 'É → é');
  assert.equal(letterKeysymInCase(0xe9, true), 0xc9, 'é → É');
  for (const keysym of [0xd7, 0xf7, 0xdf, 0xff, 0x31, 0x40, 0x5b, 0x60, 0xff0d, 0x010003b1]) {
    assert.equal(letterKeysymInCase(keysym, true), keysym, keysym.toString(16));
    assert.equal(letterKeysymInCase(keysym, false), keysym, keysym.toString(16));
  }
});
