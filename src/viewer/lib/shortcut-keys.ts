// Keeps a shortcut a shortcut on the desktop: Ctrl+A must arrive as Ctrl+A, never as Ctrl+Shift+A.
//
// Why this is needed. noVNC sends, for each key, the keysym of the character the browser says the
// key made (KeyboardEvent.key), and a scancode in a QEMU extended key event. Xvnc (TigerVNC 1.12,
// without -RawKeyboard) drops the scancode and types the keysym, faking whatever modifier its US
// keymap needs for it: its log shows "temp shift 50 down, keycode 38 down, temp shift 50 up" for
// keysym 0x41 ("A"). That is right for text ("@" without a Shift event, from a phone's keyboard or
// Playwright's keyboard.type, arrives as "@"), but wrong for a shortcut whose letter comes in the
// other case than the desktop's Caps Lock gives — Playwright's press('Control+A'), or a keyboard
// whose Caps Lock the desktop does not know about: the sandbox's Chromium then sees Ctrl+Shift+A,
// opens its Tab Search bubble, and a moment later that bubble takes the keyboard, so the rest of
// what the person types lands in its search box ("demo" in the field, "@porthole.test" gone).
//
// -RawKeyboard is not the way out: it would type the desktop's US layout for every key, so a
// German "@" (AltGr+Q) would arrive as "q", and "@" without a Shift event as "2".
//
// So: a letter pressed with Ctrl, Alt or Meta held and no Shift is sent in the case the browser's
// Caps Lock gives (lower case when it is off); noVNC keeps the desktop's Caps Lock equal to the
// browser's, so Xvnc has no reason to fake Shift. Its release is sent with the same keysym, because
// Xvnc matches releases to presses by keysym. Everything else passes through as noVNC made it.

/** The part of noVNC's RFB this needs; see lib/novnc.d.ts. */
export interface KeySender {
  sendKey(keysym: number, code: string | null, down?: boolean): void;
}

/** What a keydown said about the modifiers the person holds. */
export interface ShortcutState {
  isShortcut: boolean;
  isCapsLockOn: boolean;
}

/** Ctrl, Alt or Meta held, Shift not, and not AltGr (which Windows reports as Ctrl+Alt). */
export function shortcutStateOf(event: Pick<KeyboardEvent, 'ctrlKey' | 'altKey' | 'metaKey' | 'shiftKey' | 'getModifierState'>): ShortcutState {
  const isShortcut = (event.ctrlKey || event.altKey || event.metaKey) && !event.shiftKey && !event.getModifierState('AltGraph');
  return { isShortcut, isCapsLockOn: event.getModifierState('CapsLock') };
}

/**
 * The keysym of the same letter in the wanted case, for Latin-1 letters (whose keysym is the code
 * point); any other keysym unchanged. ß, ÿ, × and ÷ have no Latin-1 counterpart and stay.
 */
export function letterKeysymInCase(keysym: number, isUpper: boolean): number {
  const isAsciiUpper = keysym >= 0x41 && keysym <= 0x5a;
  const isAsciiLower = keysym >= 0x61 && keysym <= 0x7a;
  const isLatinUpper = keysym >= 0xc0 && keysym <= 0xde && keysym !== 0xd7;
  const isLatinLower = keysym >= 0xe0 && keysym <= 0xfe && keysym !== 0xf7;
  if (isUpper && (isAsciiLower || isLatinLower)) return keysym - 0x20;
  if (!isUpper && (isAsciiUpper || isLatinUpper)) return keysym + 0x20;
  return keysym;
}

/**
 * Wraps `rfb.sendKey` (noVNC's keyboard handler sends every key through it) and watches keydowns on
 * `container` in the capture phase, before noVNC's listener on the canvas inside it. Returns a
 * function that removes the listener; the wrapper goes with the RFB object.
 */
export function keepShortcutsShortcuts(rfb: KeySender, container: HTMLElement): () => void {
  const send = rfb.sendKey.bind(rfb);
  /**
   * What the keydowns being handled right now said, by code. Kept until the event has been through
   * every listener (a timer, not a microtask: microtasks run between listeners), so that noVNC's
   * sendKey for it finds it and no later sendKey (Paste's, a script's) is taken for it.
   */
  const keyDowns = new Map<string, ShortcutState>();
  /** Keysyms sent for keys still down, by code, so that each release matches its press. */
  const pressed = new Map<string, number>();

  const onKeyDown = (event: KeyboardEvent): void => {
    const state = shortcutStateOf(event);
    keyDowns.set(event.code, state);
    window.setTimeout(() => {
      if (keyDowns.get(event.code) === state) keyDowns.delete(event.code);
    }, 0);
  };
  container.addEventListener('keydown', onKeyDown, { capture: true });

  rfb.sendKey = (keysym: number, code: string | null, down?: boolean): void => {
    // A press and release in one call: noVNC's sendKey calls this again for each half.
    if (down === undefined || code === null) {
      send(keysym, code, down);
      return;
    }
    if (!down) {
      const sent = pressed.get(code);
      pressed.delete(code);
      send(sent ?? keysym, code, false);
      return;
    }
    const state = keyDowns.get(code);
    keyDowns.delete(code);
    const sent = state?.isShortcut ? letterKeysymInCase(keysym, state.isCapsLockOn) : keysym;
    pressed.set(code, sent);
    send(sent, code, true);
  };

  return () => container.removeEventListener('keydown', onKeyDown, { capture: true });
}
