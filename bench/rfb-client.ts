import { connect, type Socket } from 'node:net';
import { WebSocket } from 'ws';

// A minimal RFB 3.8 client for benchmarks: the same protocol bytes over a direct unix socket, over
// porthole's relay, or over websockify, so the three paths are compared like for like.

export interface RfbTransport {
  write(data: Buffer): void;
  close(): void;
  onData(listener: (chunk: Buffer) => void): void;
}

export function socketTransport(socket: Socket): RfbTransport {
  return { write: (d) => void socket.write(d), close: () => socket.destroy(), onData: (l) => void socket.on('data', l) };
}

export function wsTransport(ws: WebSocket): RfbTransport {
  return { write: (d) => ws.send(d), close: () => ws.terminate(), onData: (l) => void ws.on('message', (d: Buffer) => l(d)) };
}

export async function openUnix(path: string): Promise<RfbTransport> {
  const socket = connect(path);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  return socketTransport(socket);
}

export async function openWs(url: string, protocols?: string[]): Promise<RfbTransport> {
  const ws = new WebSocket(url, protocols, { perMessageDeflate: false });
  ws.binaryType = 'nodebuffer';
  await new Promise<void>((resolve, reject) => ws.once('open', resolve).once('error', reject));
  return wsTransport(ws);
}

export class RfbClient {
  #chunks: Buffer[] = [];
  #length = 0;
  #wake: (() => void) | null = null;
  width = 0;
  height = 0;

  constructor(readonly transport: RfbTransport) {
    transport.onData((chunk) => {
      this.#chunks.push(chunk);
      this.#length += chunk.length;
      this.#wake?.();
    });
  }

  async read(n: number): Promise<Buffer> {
    while (this.#length < n) await new Promise<void>((resolve) => (this.#wake = resolve));
    const all = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.#chunks = rest.length ? [rest] : [];
    this.#length = rest.length;
    return out;
  }

  /** Discards exactly n bytes without concatenating them (for large frames). */
  async skip(n: number): Promise<void> {
    let left = n;
    while (left > 0) {
      if (this.#length === 0) await new Promise<void>((resolve) => (this.#wake = resolve));
      const head = this.#chunks[0]!;
      if (head.length <= left) {
        this.#chunks.shift();
        this.#length -= head.length;
        left -= head.length;
      } else {
        this.#chunks[0] = head.subarray(left);
        this.#length -= left;
        left = 0;
      }
    }
  }

  async handshake(): Promise<void> {
    await this.read(12);
    this.transport.write(Buffer.from('RFB 003.008\n'));
    const count = (await this.read(1))[0]!;
    await this.read(count);
    this.transport.write(Buffer.from([1]));
    await this.read(4);
    this.transport.write(Buffer.from([1]));
    const init = await this.read(24);
    this.width = init.readUInt16BE(0);
    this.height = init.readUInt16BE(2);
    await this.read(init.readUInt32BE(20));
    // Raw encoding only: frame sizes are predictable, so throughput compares the paths, not encoders.
    const encodings = Buffer.alloc(8);
    encodings.writeUInt8(2, 0);
    encodings.writeUInt16BE(1, 2);
    encodings.writeInt32BE(0, 4);
    this.transport.write(encodings);
  }

  requestUpdate(incremental: boolean, x: number, y: number, w: number, h: number): void {
    const b = Buffer.alloc(10);
    b.writeUInt8(3, 0);
    b.writeUInt8(incremental ? 1 : 0, 1);
    b.writeUInt16BE(x, 2);
    b.writeUInt16BE(y, 4);
    b.writeUInt16BE(w, 6);
    b.writeUInt16BE(h, 8);
    this.transport.write(b);
  }

  /** Reads one FramebufferUpdate (raw rectangles, 32 bpp) and returns its size in bytes. */
  async readUpdate(): Promise<number> {
    for (;;) {
      const type = (await this.read(1))[0];
      if (type === 0) break;
      if (type === 2) continue; // Bell
      if (type === 3) {
        await this.read(3);
        await this.skip((await this.read(4)).readUInt32BE(0));
        continue;
      }
      throw new Error(`unexpected server message ${type}`);
    }
    const count = (await this.read(3)).readUInt16BE(1);
    let bytes = 4;
    for (let i = 0; i < count; i++) {
      const rect = await this.read(12);
      const w = rect.readUInt16BE(4);
      const h = rect.readUInt16BE(6);
      const encoding = rect.readInt32BE(8);
      if (encoding === 0) {
        await this.skip(w * h * 4);
        bytes += 12 + w * h * 4;
      } else if (encoding === -223) {
        bytes += 12; // DesktopSize pseudo-rectangle
      } else {
        throw new Error(`unexpected encoding ${encoding}`);
      }
    }
    return bytes;
  }

  close(): void {
    this.transport.close();
  }
}

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;
}
