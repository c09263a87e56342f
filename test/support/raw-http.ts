import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';

// HTTP/1.1 and WebSocket framing by hand, over a raw TCP socket: the abuse tests send what no
// well-behaved client library would (duplicated or thousands of headers, broken upgrade requests,
// unmasked or malformed frames) and read exactly what the server answers.

export interface RawResponse {
  status: number;
  /** Lower-cased names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  body: Buffer;
  /** The socket, still open, when the answer was 101 Switching Protocols or a 2xx to CONNECT. */
  socket: Socket | null;
  /** Bytes that came after the headers of a 101 (the first WebSocket frames) or of a CONNECT's 2xx (the tunnel's). */
  rest: Buffer;
}

function parseHead(head: string): { status: number; headers: Record<string, string> } {
  const [statusLine = '', ...lines] = head.split('\r\n');
  const match = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
  if (!match) throw new Error(`not an HTTP response: ${JSON.stringify(statusLine.slice(0, 80))}`);
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  return { status: Number(match[1]), headers };
}

/** The body of a chunked message, or null while it is incomplete. */
function dechunk(data: Buffer): Buffer | null {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const lineEnd = data.indexOf('\r\n', at);
    if (lineEnd < 0) return null;
    const size = parseInt(data.subarray(at, lineEnd).toString('latin1'), 16);
    if (!Number.isFinite(size)) throw new Error('bad chunk size');
    if (size === 0) return Buffer.concat(parts);
    if (data.length < lineEnd + 2 + size + 2) return null;
    parts.push(data.subarray(lineEnd + 2, lineEnd + 2 + size));
    at = lineEnd + 2 + size + 2;
  }
}

/**
 * Sends `request` (bytes as given) to 127.0.0.1:port, or to the unix socket at a path, and reads
 * one response: to its Content-Length, its last chunk, or the connection's end. A 101, or a 2xx
 * to CONNECT, leaves the socket open for what follows. Rejects when no complete response arrives
 * within `timeoutMs` or the connection ends without one.
 */
export function rawRequest(to: number | string, requestBytes: string | Buffer, options: { timeoutMs?: number } = {}): Promise<RawResponse> {
  const request = Buffer.isBuffer(requestBytes) ? requestBytes : Buffer.from(requestBytes, 'latin1');
  return new Promise((resolve, reject) => {
    const socket = typeof to === 'string' ? connect(to) : connect(to, '127.0.0.1');
    const isHead = request.subarray(0, 5).toString('latin1') === 'HEAD ';
    const isConnect = request.subarray(0, 8).toString('latin1') === 'CONNECT ';
    let data = Buffer.alloc(0);
    let isDone = false;
    const timer = setTimeout(
      () => finish(new Error(`no complete response within ${options.timeoutMs ?? 5_000} ms; got ${JSON.stringify(data.toString('latin1').slice(0, 200))}`)),
      options.timeoutMs ?? 5_000,
    );
    const finish = (error: Error | null, response?: RawResponse): void => {
      if (isDone) return;
      isDone = true;
      clearTimeout(timer);
      socket.removeAllListeners('data');
      if (error) {
        socket.destroy();
        reject(error);
      } else {
        if (!response!.socket) socket.destroy();
        resolve(response!);
      }
    };
    const tryParse = (isEnded: boolean): void => {
      const headEnd = data.indexOf('\r\n\r\n');
      if (headEnd < 0) {
        if (isEnded) finish(new Error(`connection ended without a response; got ${JSON.stringify(data.toString('latin1').slice(0, 200))}`));
        return;
      }
      let head: ReturnType<typeof parseHead>;
      try {
        head = parseHead(data.subarray(0, headEnd).toString('latin1'));
      } catch (error) {
        finish(error as Error);
        return;
      }
      const after = data.subarray(headEnd + 4);
      if (head.status === 101 || (isConnect && head.status >= 200 && head.status < 300)) {
        finish(null, { ...head, body: Buffer.alloc(0), socket, rest: after });
        return;
      }
      // A response to HEAD announces a body it does not send.
      if (isHead) {
        finish(null, { ...head, body: Buffer.alloc(0), socket: null, rest: Buffer.alloc(0) });
        return;
      }
      const length = head.headers['content-length'];
      if (length !== undefined) {
        if (after.length >= Number(length)) finish(null, { ...head, body: after.subarray(0, Number(length)), socket: null, rest: Buffer.alloc(0) });
        else if (isEnded) finish(new Error(`body cut short: ${after.length} of ${length} bytes`));
        return;
      }
      if (/chunked/i.test(head.headers['transfer-encoding'] ?? '')) {
        const body = dechunk(after);
        if (body) finish(null, { ...head, body, socket: null, rest: Buffer.alloc(0) });
        else if (isEnded) finish(new Error('chunked body cut short'));
        return;
      }
      if (isEnded || head.status === 204 || head.status === 304) finish(null, { ...head, body: after, socket: null, rest: Buffer.alloc(0) });
    };
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      tryParse(false);
    });
    socket.on('end', () => tryParse(true));
    socket.on('close', () => tryParse(true));
    // A server that answers early (413, 431) and closes may reset what is still being written.
    socket.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNRESET' || error.code === 'EPIPE') tryParse(true);
      else finish(error);
    });
    socket.write(request);
  });
}

/** A request head with the given lines (each `Name: value`), then an empty line, then `body`. */
export function requestText(method: string, path: string, headerLines: readonly string[], body = ''): string {
  return `${method} ${path} HTTP/1.1\r\n${headerLines.map((line) => `${line}\r\n`).join('')}\r\n${body}`;
}

/** A valid Sec-WebSocket-Key: 16 random bytes in base64. */
export function webSocketKey(): string {
  return randomBytes(16).toString('base64');
}

export const opcodes = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const;

export interface FrameSpec {
  opcode: number;
  payload?: Buffer;
  fin?: boolean;
  /** RSV1–3 as a 3-bit number. */
  rsv?: number;
  /** Clients must mask; false sends an unmasked frame. */
  masked?: boolean;
  /** Claims this payload length in the header (the payload sent is still `payload`). */
  declaredLength?: bigint;
}

/** One WebSocket frame as a client sends it (masked unless told otherwise). */
export function encodeFrame(spec: FrameSpec): Buffer {
  const payload = spec.payload ?? Buffer.alloc(0);
  const masked = spec.masked ?? true;
  const length = spec.declaredLength ?? BigInt(payload.length);
  const first = ((spec.fin ?? true) ? 0x80 : 0) | ((spec.rsv ?? 0) << 4) | (spec.opcode & 0x0f);
  let header: Buffer;
  if (length < 126n) header = Buffer.from([first, (masked ? 0x80 : 0) | Number(length)]);
  else if (length < 65536n) {
    header = Buffer.alloc(4);
    header[0] = first;
    header[1] = (masked ? 0x80 : 0) | 126;
    header.writeUInt16BE(Number(length), 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = first;
    header[1] = (masked ? 0x80 : 0) | 127;
    header.writeBigUInt64BE(length, 2);
  }
  if (!masked) return Buffer.concat([header, payload]);
  const mask = randomBytes(4);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i]! ^= mask[i % 4]!;
  return Buffer.concat([header, mask, body]);
}

export interface ServerFrame {
  opcode: number;
  fin: boolean;
  payload: Buffer;
}

/**
 * Reads the server's (unmasked) frames from a raw socket. `next()` resolves with the next frame,
 * or null when the connection ended.
 */
export function frameReader(socket: Socket, initial: Buffer = Buffer.alloc(0)) {
  let buffer = initial;
  let isEnded = false;
  let wake: (() => void) | null = null;
  socket.on('data', (chunk: Buffer) => {
    buffer = Buffer.concat([buffer, chunk]);
    wake?.();
  });
  const onEnd = () => {
    isEnded = true;
    wake?.();
  };
  socket.on('end', onEnd);
  socket.on('close', onEnd);
  socket.on('error', onEnd);

  function take(): ServerFrame | null {
    if (buffer.length < 2) return null;
    const fin = (buffer[0]! & 0x80) !== 0;
    const opcode = buffer[0]! & 0x0f;
    let length = buffer[1]! & 0x7f;
    let at = 2;
    if (length === 126) {
      if (buffer.length < 4) return null;
      length = buffer.readUInt16BE(2);
      at = 4;
    } else if (length === 127) {
      if (buffer.length < 10) return null;
      length = Number(buffer.readBigUInt64BE(2));
      at = 10;
    }
    if ((buffer[1]! & 0x80) !== 0) throw new Error('the server sent a masked frame');
    if (buffer.length < at + length) return null;
    const payload = buffer.subarray(at, at + length);
    buffer = buffer.subarray(at + length);
    return { opcode, fin, payload };
  }

  return {
    async next(timeoutMs = 5_000): Promise<ServerFrame | null> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const frame = take();
        if (frame) return frame;
        if (isEnded) return null;
        if (Date.now() > deadline) throw new Error(`no frame within ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 50);
        });
        wake = null;
      }
    },
    /** Binary payload bytes from data frames, skipping control frames, until `n` have arrived. */
    async readData(n: number, timeoutMs = 5_000): Promise<Buffer> {
      const parts: Buffer[] = [];
      let have = 0;
      while (have < n) {
        const frame = await this.next(timeoutMs);
        if (!frame) throw new Error(`connection ended after ${have} of ${n} bytes`);
        if (frame.opcode === opcodes.close)
          throw new Error(`closed ${frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : ''} ${frame.payload.subarray(2).toString()}`);
        if (frame.opcode === opcodes.binary || frame.opcode === opcodes.continuation) {
          parts.push(frame.payload);
          have += frame.payload.length;
        }
      }
      const all = Buffer.concat(parts);
      // Keep what was read past n for the next call (frames do not follow RFB message bounds).
      if (all.length > n) buffer = Buffer.concat([encodeServerData(all.subarray(n)), buffer]);
      return all.subarray(0, n);
    },
    /** Skips data frames until the server's close frame; its code and reason, or null when the socket ended first. */
    async closeFrame(timeoutMs = 5_000): Promise<{ code: number; reason: string } | null> {
      for (;;) {
        const frame = await this.next(timeoutMs);
        if (!frame) return null;
        if (frame.opcode === opcodes.close) {
          return { code: frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : 1005, reason: frame.payload.subarray(2).toString() };
        }
      }
    },
  };
}

/** An unmasked binary frame, as the server would send it: to push back bytes read past a boundary. */
function encodeServerData(payload: Buffer): Buffer {
  return encodeFrame({ opcode: opcodes.binary, payload, masked: false });
}
