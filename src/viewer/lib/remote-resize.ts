// Remote resize: the desktop follows the viewer's size, so a laptop or a phone shows it at 1:1
// instead of a 1280x800 desktop shrunk to unreadable text. Xvnc runs with -AcceptSetDesktopSize;
// the agent re-lays out the windows when the screen changes (src/agent/layout.ts).
//
// Not noVNC's own `resizeSession`: that asks for exactly the container's size, however small, and
// a phone held upright would get a 390 px wide desktop that no sign-in page fits. This asks for the
// container's size but never less than 640x480; below that the desktop stays 640x480 and noVNC's
// scaling (scaleViewport, always on) shrinks it to fit — as it does when the server refuses a size.
//
// It sends the same SetDesktopSize message noVNC's resizeSession would, through noVNC internals
// (RFB.messages.setDesktopSize and the screen id/flags it read from the server's ExtendedDesktopSize).
// They are not public API; package-lock pins noVNC 1.7.0, and test/e2e/paste-resize.test.ts fails
// if an upgrade renames them.

import RFB from '@novnc/novnc';

export const minDesktop = { width: 640, height: 480 } as const;
/** A 4K framebuffer is already 32 MiB in Xvnc and in the page; larger screens get scaling. */
const maxDesktop = { width: 3840, height: 2160 } as const;
/** A dragged window edge or a rotating phone fires many resizes: ask once it settled. */
const settleMs = 300;
/** How long after connecting to wait for the server to say it can resize at all. */
const supportWaitMs = 5_000;

/** The noVNC internals used here (core/rfb.js, 1.7.0). */
interface RfbInternals {
  _sock: unknown;
  _supportsSetDesktopSize: boolean;
  _screenID: number;
  _screenFlags: number;
  _fbWidth: number;
  _fbHeight: number;
  _rfbConnectionState: string;
}
interface RfbMessages {
  setDesktopSize(sock: unknown, width: number, height: number, id: number, flags: number): void;
}

export function wantedDesktopSize(containerWidth: number, containerHeight: number): { width: number; height: number } {
  const clamp = (value: number, min: number, max: number) => Math.min(max, Math.max(min, Math.floor(value)));
  return {
    width: clamp(containerWidth, minDesktop.width, maxDesktop.width),
    height: clamp(containerHeight, minDesktop.height, maxDesktop.height),
  };
}

export class RemoteResize {
  private readonly observer: ResizeObserver;
  private timer: number | undefined;
  private isStopped = false;
  private supportDeadline = 0;

  constructor(
    private readonly rfb: RFB,
    private readonly container: HTMLElement,
  ) {
    this.observer = new ResizeObserver(() => this.schedule());
    this.observer.observe(container);
  }

  /** Call once connected: the first request waits for the server's ExtendedDesktopSize. */
  connected(): void {
    this.supportDeadline = Date.now() + supportWaitMs;
    this.schedule(0);
  }

  private schedule(delayMs: number = settleMs): void {
    if (this.isStopped) return;
    window.clearTimeout(this.timer);
    this.timer = window.setTimeout(() => this.request(), delayMs);
  }

  stop(): void {
    this.isStopped = true;
    window.clearTimeout(this.timer);
    this.observer.disconnect();
  }

  private request(): void {
    const internals = this.rfb as unknown as RfbInternals;
    if (this.isStopped || internals._rfbConnectionState !== 'connected') return;
    if (!internals._supportsSetDesktopSize) {
      // The server has not sent its first ExtendedDesktopSize yet (or never will: then scaling it is).
      if (Date.now() < this.supportDeadline) this.schedule(100);
      return;
    }
    const box = this.container.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) return; // hidden (e.g. a background iframe): keep the size
    const { width, height } = wantedDesktopSize(box.width, box.height);
    if (width === internals._fbWidth && height === internals._fbHeight) return;
    const messages = (RFB as unknown as { messages: RfbMessages }).messages;
    messages.setDesktopSize(internals._sock, width, height, internals._screenID, internals._screenFlags);
  }
}
