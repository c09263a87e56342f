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
