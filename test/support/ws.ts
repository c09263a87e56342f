import { WebSocket } from 'ws';

export interface Refusal {
  status: number;
  code: string;
}
export interface Closed {
  code: number;
  reason: string;
}

/** Opens a WebSocket and reports how it ended up: refused before the upgrade (status + error code) or open. */
export function openViewerSocket(url: string, options: { origin?: string } = {}): Promise<{ refused: Refusal } | { ws: WebSocket }> {
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
    ws.once('open', () => resolve({ ws }));
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

/** Collects binary data from a socket until at least `n` bytes arrived. */
export function createReader(ws: WebSocket) {
  let buffer = Buffer.alloc(0);
  let waiter: (() => void) | null = null;
  ws.on('message', (data: Buffer) => {
    buffer = Buffer.concat([buffer, data]);
    waiter?.();
  });
  return {
    async read(n: number, timeoutMs = 10_000): Promise<Buffer> {
      const deadline = Date.now() + timeoutMs;
      while (buffer.length < n) {
        if (Date.now() > deadline) throw new Error(`wanted ${n} bytes, have ${buffer.length}`);
        await new Promise<void>((resolve) => {
          waiter = resolve;
          setTimeout(resolve, 50);
        });
      }
      const out = buffer.subarray(0, n);
      buffer = buffer.subarray(n);
      return out;
    },
    get buffered() {
      return buffer.length;
    },
  };
}

/** RFB 3.8 handshake with security type None; returns the framebuffer size from ServerInit. */
export async function rfbHandshake(ws: WebSocket, reader: ReturnType<typeof createReader>): Promise<{ width: number; height: number }> {
  const banner = (await reader.read(12)).toString();
  if (!banner.startsWith('RFB ')) throw new Error(`not RFB: ${banner}`);
  ws.send(Buffer.from('RFB 003.008\n'));
  const count = (await reader.read(1))[0] ?? 0;
  const types = [...(await reader.read(count))];
  if (!types.includes(1)) throw new Error(`no None security type: ${types.join(',')}`);
  ws.send(Buffer.from([1]));
  const result = (await reader.read(4)).readUInt32BE(0);
  if (result !== 0) throw new Error(`security result ${result}`);
  ws.send(Buffer.from([1])); // ClientInit: shared
  const init = await reader.read(24);
  const nameLength = init.readUInt32BE(20);
  await reader.read(nameLength);
  return { width: init.readUInt16BE(0), height: init.readUInt16BE(2) };
}

export function framebufferUpdateRequest(incremental: boolean, x: number, y: number, w: number, h: number): Buffer {
  const b = Buffer.alloc(10);
  b.writeUInt8(3, 0);
  b.writeUInt8(incremental ? 1 : 0, 1);
  b.writeUInt16BE(x, 2);
  b.writeUInt16BE(y, 4);
  b.writeUInt16BE(w, 6);
  b.writeUInt16BE(h, 8);
  return b;
}

/** SetEncodings with raw only, so full-frame requests produce large, predictable updates. */
export function setEncodingsRaw(): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt8(2, 0);
  b.writeUInt16BE(1, 2);
  b.writeInt32BE(0, 4);
  return b;
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
  reader: ReturnType<typeof createReader>;
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
  const opened = await openViewerSocket(url, options);
  if ('refused' in opened) throw new Error(`viewer refused: ${opened.refused.status} ${opened.refused.code}`);
  const { ws } = opened;
  ws.on('error', () => {}); // the close event reports how it ended
  const closed = closeOf(ws);
  const reader = createReader(ws);
  const early = closed.then((c) => {
    throw new Error(`viewer closed ${c.code} ${c.reason} before the RFB handshake completed`);
  });
  early.catch(() => {});
  try {
    const size = await Promise.race([rfbHandshake(ws, reader), early]);
    return { ws, reader, size, closed };
  } catch (error) {
    ws.terminate();
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
export async function expectFramebufferUpdate(viewer: Pick<ConnectedViewer, 'ws' | 'reader'>, timeoutMs = 10_000): Promise<void> {
  viewer.ws.send(setEncodingsRaw());
  viewer.ws.send(framebufferUpdateRequest(false, 0, 0, 4, 4));
  // FramebufferUpdate: type 0, padding, 1 rectangle; then x, y, w, h, encoding (raw) and 4x4x4 bytes.
  const header = await viewer.reader.read(4, timeoutMs);
  if (header[0] !== 0) throw new Error(`expected a FramebufferUpdate, got message type ${header[0]}`);
  const rectangles = header.readUInt16BE(2);
  for (let i = 0; i < rectangles; i++) {
    const rect = await viewer.reader.read(12, timeoutMs);
    const encoding = rect.readInt32BE(8);
    if (encoding !== 0) throw new Error(`expected a raw rectangle, got encoding ${encoding}`);
    await viewer.reader.read(rect.readUInt16BE(4) * rect.readUInt16BE(6) * 4, timeoutMs);
  }
}
