// One connection to a session's desktop: the page creates the WebSocket itself and hands it to noVNC,
// because noVNC's own `disconnect` event hides the close code and reason — and those are how the
// server says why (4410 SESSION_ENDED, 4502 SANDBOX_UNREACHABLE, …). One instance per attempt;
// reconnecting makes a new one.

import RFB from '@novnc/novnc';
import { RemoteResize } from './remote-resize.js';
import { keepShortcutsShortcuts } from './shortcut-keys.js';

export interface VncClose {
  code: number;
  reason: string;
  /**
   * Set when the page, not the server, knows the cause better than the close code does: the
   * handshake timed out, or noVNC gave up on the RFB protocol and closed the socket itself.
   */
  cause: string | null;
}

export interface VncConnectionHooks {
  /** The RFB handshake finished: the desktop is on screen. */
  onConnected(): void;
  /** Called once, whoever closed it. */
  onClosed(close: VncClose): void;
}

/** A relay that accepts the socket but never speaks RFB would otherwise leave "Connecting…" forever. */
const handshakeTimeoutMs = 20_000;

export class VncConnection {
  readonly rfb: RFB;
  private readonly socket: WebSocket;
  private handshakeTimer: number | undefined;
  private cause: string | null = null;
  private isClosed = false;
  private readonly remoteResize: RemoteResize;
  private readonly stopShortcutKeys: () => void;

  /** Throws if the URL is not a valid WebSocket URL. */
  constructor(
    container: HTMLElement,
    url: string,
    private readonly hooks: VncConnectionHooks,
  ) {
    this.socket = new WebSocket(url);
    this.socket.binaryType = 'arraybuffer';
    // Registered before noVNC sets its own onclose, so this runs first and sees the raw event.
    this.socket.addEventListener('close', (event) => this.closed(event.code, event.reason));

    try {
      this.rfb = new RFB(container, this.socket, { shared: true });
    } catch (error) {
      this.socket.close();
      throw error;
    }
    // Scaling stays on as the fallback: a size the server refuses, or a container under 640x480.
    this.rfb.scaleViewport = true;
    // RemoteResize asks for the container's size itself, with a floor noVNC's resizeSession lacks.
    this.rfb.resizeSession = false;
    this.remoteResize = new RemoteResize(this.rfb, container);
    this.rfb.focusOnClick = true;
    // Ctrl+A must not reach the desktop as Ctrl+Shift+A: see lib/shortcut-keys.ts.
    this.stopShortcutKeys = keepShortcutsShortcuts(this.rfb, container);
    this.rfb.background = 'transparent';

    this.rfb.addEventListener('connect', () => {
      window.clearTimeout(this.handshakeTimer);
      this.rfb.focus({ preventScroll: true });
      this.remoteResize.connected();
      this.hooks.onConnected();
    });
    this.rfb.addEventListener('securityfailure', (event) => {
      this.cause = `The desktop refused the VNC security handshake${event.detail.reason ? `: ${event.detail.reason}` : ''}`;
    });
    this.rfb.addEventListener('disconnect', (event) => {
      // When the server closes the socket our listener has already run. If it has not, noVNC gave
      // up on its own (a protocol error) and is closing the socket now; say so rather than "lost".
      if (!this.isClosed && !event.detail.clean && this.cause === null) {
        this.cause = 'The viewer could not follow the desktop’s VNC protocol';
      }
    });

    this.handshakeTimer = window.setTimeout(() => {
      this.cause = `The desktop did not answer within ${handshakeTimeoutMs / 1000} s`;
      this.rfb.disconnect();
    }, handshakeTimeoutMs);
  }

  /** Closes on purpose (the person ended the session). Idempotent; onClosed still fires. */
  disconnect(cause: string): void {
    if (this.isClosed) return;
    this.cause ??= cause;
    this.rfb.disconnect();
  }

  private closed(code: number, reason: string): void {
    if (this.isClosed) return;
    this.isClosed = true;
    window.clearTimeout(this.handshakeTimer);
    this.remoteResize.stop();
    this.stopShortcutKeys();
    this.hooks.onClosed({ code, reason, cause: this.cause });
  }
}
