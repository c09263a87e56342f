import { setTimeout as sleep } from 'node:timers/promises';
import { pinSocket } from '../src/drivers/pinned-socket.js';
import type { SandboxId, SessionId } from '../src/protocol/ids.js';
import type { TestServer } from '../test/support/server.js';
import { type ColourTarget, type FramebufferSighting, watchSocketInWorker } from './framebuffer-colour.js';

// The demo sign-in page in a session's sandbox, seen in its framebuffer: what the benches that time
// "POST /v1/sessions → the sign-in page is drawn" stop their clock on (start-to-sign-in.ts, drivers.ts).

/**
 * The demo sign-in page (src/demo/oidc/pages.ts): its 8 px brand bar across the browser window is
 * over 5,000 pixels of #2f6fde even in a 640 px window, the logo and the focused field's ring add
 * more; 4,000 is met by no other screen and is met by the bar alone. Chromium holds the top 62 % of
 * the desktop (src/agent/layout.ts); the terminal below it is not looked at.
 */
export const signInPage: ColourTarget = { rgb: [47, 111, 222], tolerance: 12, minPixels: 4_000, topFraction: 0.62 };

/**
 * The sandbox's framebuffer, watched from its own VNC socket (on a worker thread) as soon as the
 * session names its sandbox and Xvnc has bound the socket: through the server's pin of it, as
 * start-to-frame's baseline does (src/drivers/pinned-socket.ts). Resolves when the page shows.
 */
export async function watchSessionFramebuffer(t: TestServer, sessionId: string, timeoutMs: number, signal: AbortSignal): Promise<FramebufferSighting> {
  for (;;) {
    signal.throwIfAborted();
    // The store, not the API: polled this often, HTTP requests would load the server under measurement.
    const session = await t.server.store.getSession(sessionId as SessionId);
    const handle = session?.sandboxId ? await t.server.driver.inspect(session.sandboxId as SandboxId) : null;
    if (handle?.vnc.kind === 'unix') {
      try {
        if (handle.vnc.pin) await pinSocket(handle.vnc.pin, handle.vnc.path);
        return await watchSocketInWorker(handle.vnc.path, signInPage, timeoutMs, signal);
      } catch (error) {
        if (signal.aborted) throw error;
        // Not there yet (Xvnc has not bound its socket) or restarted under the pin: pin again shortly.
      }
    }
    await sleep(20, undefined, { signal });
  }
}
