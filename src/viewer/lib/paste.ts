// "Paste": puts the person's clipboard text into the desktop's focused field by typing it, one key
// event per character, as if they had typed it on the desktop's keyboard.
//
// Why typing and not the VNC clipboard. Both were measured here (test/e2e/paste-resize.test.ts,
// Xvnc 1.12 + Debian's Chromium + xterm): noVNC's clipboardPasteFrom (ClientCutText) followed by a
// Ctrl+V does paste into a Chromium text field, but it leaves the password on the desktop's
// clipboard (and PRIMARY selection) where any later paste can reach it, it does nothing in the
// xterm (which pastes with Shift+Insert or the middle button, not Ctrl+V) — and the CLI logins ask
// for codes there — and some sign-in pages block paste into one-time-code fields. Typing works in
// all three and leaves nothing behind.
//
// Shift is pressed here, around each character that needs it. Left to itself, TigerVNC types an
// uppercase letter sent as a bare keysym by toggling Caps Lock (measured with xev), and leaves
// Caps Lock on after a text that ends in one: the person's next keys (and Ctrl+A, which becomes
// Chromium's Ctrl+Shift+A) then arrive changed. With Shift already down it fakes nothing.

import { phrase, type Phrase } from './catalogue.js';

/** More than a password, a 2FA code or an API key; less than anyone would want typed at them. */
export const pasteLimitBytes = 4096;

/** Characters sent per batch; a short pause between batches keeps the X event queue shallow. */
const batchSize = 64;
const batchPauseMs = 8;

const keysymReturn = 0xff0d;
const keysymTab = 0xff09;
const keysymShiftLeft = 0xffe1;

/** On the US layout Xvnc starts with: the characters typed with Shift held. */
const shiftedAscii = /^[A-Z~!@#$%^&*()_+{}|:"<>?]$/;

/** Whether Shift must be held for `char`: US-layout symbols, and uppercase letters of any script. */
export function needsShift(char: string): boolean {
  if (shiftedAscii.test(char)) return true;
  return (char.codePointAt(0) ?? 0) > 0x7f && char !== char.toLowerCase();
}

/**
 * The X keysym that types a character: Latin-1 is the code point itself, anything else is X's
 * Unicode keysym (0x01000000 + code point), which Xvnc maps to a spare keycode on the fly. This is
 * noVNC's own keysymdef lookup minus its table of legacy aliases, which X treats as equivalent;
 * that module is not among the package's exports. Null for control characters other than newline
 * and tab, which are skipped.
 */
export function keysymFor(char: string): number | null {
  const code = char.codePointAt(0) ?? 0;
  if (char === '\n') return keysymReturn;
  if (char === '\t') return keysymTab;
  if (code < 0x20 || (code >= 0x7f && code < 0xa0)) return null;
  if (code <= 0xff) return code;
  return 0x01000000 | code;
}

export type PasteCheck = { ok: true; text: string } | { ok: false; sentence: Phrase };

/**
 * Whether a text may be typed, and the text as it will be: a line break at the end (a copied code
 * often has one) is dropped so that it does not submit a form, \r\n becomes \n.
 */
export function checkPasteText(raw: string): PasteCheck {
  const text = raw.replace(/\r\n?/g, '\n').replace(/\n$/, '');
  if (text.length === 0) return { ok: false, sentence: phrase('paste.empty') };
  const bytes = new TextEncoder().encode(text).length;
  if (bytes > pasteLimitBytes) {
    const kib = (bytes / 1024).toFixed(1);
    return {
      ok: false,
      sentence: phrase('paste.tooLong', { size: kib, limit: pasteLimitBytes / 1024 }),
    };
  }
  return { ok: true, text };
}

/** The part of noVNC's RFB this needs; see lib/novnc.d.ts. */
interface KeySender {
  sendKey(keysym: number, code: string | null, down?: boolean): void;
}

/**
 * Modifier keys the person may still hold on the desktop (Ctrl+Shift+V was pressed a moment ago,
 * and noVNC forwarded Ctrl and Shift): released first, or the text would arrive as shortcuts.
 */
const modifiers: [number, string][] = [
  [0xffe1, 'ShiftLeft'],
  [0xffe2, 'ShiftRight'],
  [0xffe3, 'ControlLeft'],
  [0xffe4, 'ControlRight'],
  [0xffe9, 'AltLeft'],
  [0xfe03, 'AltRight'],
  [0xffeb, 'MetaLeft'],
  [0xffec, 'MetaRight'],
];

/** Types `text` on the desktop. Resolves when every key was sent; stops early if `signal` aborts. */
export async function typeText(rfb: KeySender, text: string, signal?: AbortSignal): Promise<number> {
  for (const [keysym, code] of modifiers) rfb.sendKey(keysym, code, false);
  const chars = [...text];
  let sent = 0;
  for (let i = 0; i < chars.length; i += batchSize) {
    if (signal?.aborted) break;
    for (const char of chars.slice(i, i + batchSize)) {
      const keysym = keysymFor(char);
      if (keysym === null) continue;
      // No physical key code: Xvnc picks the keycode from the keysym (adding one for characters
      // its keymap lacks).
      const isShifted = needsShift(char);
      if (isShifted) rfb.sendKey(keysymShiftLeft, 'ShiftLeft', true);
      rfb.sendKey(keysym, null);
      if (isShifted) rfb.sendKey(keysymShiftLeft, 'ShiftLeft', false);
      sent++;
    }
    if (i + batchSize < chars.length) await new Promise((resolve) => setTimeout(resolve, batchPauseMs));
  }
  return sent;
}
