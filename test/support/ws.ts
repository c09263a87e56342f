import { WebSocket } from 'ws';
import { encodeFramebufferUpdateRequest, encodeSetEncodings, RfbClient, rfbEncodings, webSocketTransport } from '../../src/drivers/rfb-client.js';

export interface Refusal {
  status: number;
  code: string;
}
export interface Closed {
  code: number;
  reason: string;
}

/**
 * Opens a WebSocket and reports how it ended up: refused before the upgrade (status + error code) or
 * open. `paused`: it reads nothing until the caller resumes it, so a first message that came in the
 * same packet as the upgrade's answer (a proxy in front joins them) waits for the caller's listener.
 */
export function openViewerSocket(url: string, options: { origin?: string; paused?: boolean } = {}): Promise<{ refused: Refusal } | { ws: WebSocket }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { origin: options.origin, perMessageDeflate: false });
    ws.on('unexpected-response', (_request, response) => {
      let body = '';
      response.on('data', (chunk: Buffer) => (body += chunk.toString()));
      response.on('end', () => {
        const code = (JSON.parse(body || '{}') as { error?: { code?: string } }).error?.code ?? '';
        resolve({ refused: { status: response.statusCode ?? 0, code } });
        ws.terminate();
      });
    });
    ws.once('open', () => {
      if (options.paused) ws.pause();
      resolve({ ws });
    });
    ws.once('error', (error) => {
      if (ws.readyState !== WebSocket.CLOSED) reject(error);
    });
  });
}

export function nextClose(ws: WebSocket, timeoutMs = 15_000): Promise<Closed> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no close within ${timeoutMs} ms`)), timeoutMs);
    ws.once('close', (code, reason) => {
      clearTimeout(timer);
      resolve({ code, reason: reason.toString() });
    });
  });
}

/** The RFB client (src/drivers/rfb-client.ts) over a viewer's WebSocket; each read waits 10 s unless it names its own limit. */
export function createReader(ws: WebSocket): RfbClient {
  return new RfbClient(webSocketTransport(ws), { readTimeoutMs: 10_000 });
}

/** RFB handshake with security type None (3.8 against Xvnc); returns the framebuffer size from ServerInit. */
export async function rfbHandshake(_ws: WebSocket, reader: RfbClient): Promise<{ width: number; height: number }> {
  const { width, height } = await reader.handshake();
  return { width, height };
}

export function framebufferUpdateRequest(incremental: boolean, x: number, y: number, width: number, height: number): Buffer {
  return encodeFramebufferUpdateRequest({ incremental, x, y, width, height });
}

/** SetEncodings with raw only, so full-frame requests produce large, predictable updates. */
export function setEncodingsRaw(): Buffer {
  return encodeSetEncodings([rfbEncodings.raw]);
}

/** The relay URL of a session's viewer socket on a server (`http://…` base), with a ticket when given. */
export function viewerSocketUrl(baseUrl: string, sessionId: string, ticket?: string): string {
  const query = ticket === undefined ? '' : `?ticket=${encodeURIComponent(ticket)}`;
  return `${baseUrl.replace(/^http/, 'ws')}/v1/sessions/${sessionId}/vnc${query}`;
}

/**
 * How a socket ended, recorded from the moment this is called (unlike `nextClose`, which only sees
 * a close that happens after it is called, with a timeout). Never rejects; `at` is Date.now().
 */
export function closeOf(ws: WebSocket): Promise<Closed & { at: number }> {
  return new Promise((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) return resolve({ code: 1006, reason: 'already closed', at: Date.now() });
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString(), at: Date.now() }));
  });
}

export interface ConnectedViewer {
  ws: WebSocket;
  /** The RFB client on this socket, past the handshake. */
  reader: RfbClient;
  /** From ServerInit. */
  size: { width: number; height: number };
  /** Resolves when the socket closes, whenever that is. */
  closed: Promise<Closed & { at: number }>;
}

/**
 * A viewer as noVNC is one: the WebSocket opens, the RFB 3.8 handshake completes. Throws, naming
 * the refusal or the close code, when the relay refuses it or closes it before the desktop answers.
 */
export async function connectViewer(url: string, options: { origin?: string; timeoutMs?: number } = {}): Promise<ConnectedViewer> {
  const opened = await openViewerSocket(url, { ...options, paused: true });
  if ('refused' in opened) throw new Error(`viewer refused: ${opened.refused.status} ${opened.refused.code}`);
  const { ws } = opened;
  ws.on('error', () => {}); // the close event reports how it ended
  const closed = closeOf(ws);
  const reader = createReader(ws);
  ws.resume();
  const early = closed.then((c) => {
    throw new Error(`viewer closed ${c.code} ${c.reason} before the RFB handshake completed`);
  });
  early.catch(() => {});
  try {
    const size = await Promise.race([rfbHandshake(ws, reader), early]);
    return { ws, reader, size, closed };
  } catch (error) {
    // The close code says more than the RFB client's ECONNRESET for the same end.
    const hasClosed = ws.readyState === WebSocket.CLOSED;
    ws.terminate();
    if (hasClosed) await early;
    throw error;
  }
}

/** Closes a viewer with 1000 and waits until the close handshake is done. */
export async function closeViewer(viewer: Pick<ConnectedViewer, 'ws' | 'closed'>): Promise<void> {
  if (viewer.ws.readyState === WebSocket.OPEN) viewer.ws.close(1000);
  const timer = setTimeout(() => viewer.ws.terminate(), 5_000);
  await viewer.closed;
  clearTimeout(timer);
}

/** Asks for a small framebuffer region and waits for the FramebufferUpdate: the RFB stream still flows. */
export async function expectFramebufferUpdate(viewer: Pick<ConnectedViewer, 'reader'>, timeoutMs = 10_000): Promise<void> {
  viewer.reader.setEncodings([rfbEncodings.raw]);
  viewer.reader.requestUpdate({ incremental: false, width: 4, height: 4 });
  const update = await viewer.reader.readFramebufferUpdate({ timeoutMs });
  const other = update.rectangles.find((r) => r.encoding !== rfbEncodings.raw);
  if (other) throw new Error(`expected raw rectangles, got encoding ${other.encoding}`);
}
