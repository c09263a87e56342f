import type { Socket } from 'node:net';

// The one RFB (VNC) client in porthole (RFC 6143): the readiness probe's banner read, the
// diagnosis's handshake, the benchmarks' frames and the tests' viewers all speak through it.
//
// It reads from any duplex transport: a net.Socket (`socketTransport`) or a WebSocket carrying RFB
// bytes in binary messages, as the relay does (`webSocketTransport`, structural: this module does
// not import `ws`). The client speaks 3.3, 3.7 and 3.8 and security type None only: porthole's
// sandboxes offer nothing else, and the relay is where viewers are checked.
//
// Every failure is an RfbError in errno style, so callers keep their sentences:
//   ECONNRESET  the server closed the connection (`closed before the RFB banner`)
//   EPROTO      not an RFB server, or a message this client cannot read
//   EACCES      the server refuses: no None security type, or a failed security result with its reason
//   ETIMEDOUT   a read timed out, or the caller's signal was aborted by a timeout (ABORT_ERR otherwise)
//   ECONNREFUSED, EPIPE, … the transport's own error, with its code (EIO when it has none)

/** A connection carrying RFB bytes both ways. */
export interface RfbTransport {
  /** Sends bytes to the server. */
  write(data: Buffer): void;
  /** Ends the connection at once. Idempotent. */
  close(): void;
  /** Registers the listener for the server's bytes, in order. Called once, by the client. */
  onData(listener: (chunk: Buffer) => void): void;
  /** Registers the listener called once the connection has ended, with the error that ended it if any. Called once, by the client. */
  onClose(listener: (error?: NodeJS.ErrnoException) => void): void;
}

/** A net.Socket (unix or TCP) as an RFB transport. */
export function socketTransport(socket: Socket): RfbTransport {
  return {
    write: (data) => void socket.write(data),
    close: () => void socket.destroy(),
    onData: (listener) => void socket.on('data', listener),
    onClose: (listener) => {
      let failure: NodeJS.ErrnoException | undefined;
      socket.on('error', (error: NodeJS.ErrnoException) => (failure ??= error));
      socket.once('close', () => listener(failure));
    },
  };
}

/** What webSocketTransport needs of a WebSocket: `ws`'s WebSocket has it. */
export interface MessageSocket {
  send(data: Buffer): void;
  terminate(): void;
  on(event: 'message', listener: (data: Buffer | ArrayBuffer | Buffer[]) => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
  on(event: 'close', listener: () => void): unknown;
}

/** A WebSocket whose binary messages carry the RFB stream (porthole's relay, websockify) as an RFB transport. */
export function webSocketTransport(ws: MessageSocket): RfbTransport {
  return {
    write: (data) => ws.send(data),
    close: () => ws.terminate(),
    onData: (listener) =>
      void ws.on('message', (data) => listener(Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data))),
    onClose: (listener) => {
      let failure: NodeJS.ErrnoException | undefined;
      ws.on('error', (error: NodeJS.ErrnoException) => (failure ??= error));
      ws.on('close', () => listener(failure));
    },
  };
}

/** A failed RFB exchange, errno style: `code` says which kind (see the header), the message is a cause sentence. */
export class RfbError extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** Where the exchange had got to, as a sentence part: "before the RFB banner". */
    readonly progress: string,
    /** What the server had sent of the step that failed (latin1): the banner a non-RFB server sent, say. */
    readonly received: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'RfbError';
  }
}

export const rfbEncodings = { raw: 0, desktopSize: -223 } as const;

/** The protocol version both sides settle on: the server's, or 3.3 for anything older and 3.8 for anything newer (RFC 6143 §7.1.1). */
export type RfbVersion = '3.3' | '3.7' | '3.8';

export interface RfbAuthenticated {
  /** The server's banner without its newline: `RFB 003.008`. */
  banner: string;
  version: RfbVersion;
  security: 'None';
}

export interface RfbServerInit {
  width: number;
  height: number;
  /** The desktop's name. */
  name: string;
  bitsPerPixel: number;
  depth: number;
}

export type RfbHandshake = RfbAuthenticated & RfbServerInit;

export interface RfbRectangle {
  x: number;
  y: number;
  width: number;
  height: number;
  encoding: number;
}

export interface FramebufferUpdate {
  rectangles: RfbRectangle[];
  /** Size of the message on the wire, header and pixels included. */
  bytes: number;
}

export interface UpdateRequest {
  incremental?: boolean;
  x?: number;
  y?: number;
  width: number;
  height: number;
}

const bannerBytes = 12;
const securityNone = 1;
/** A refusal reason longer than this is cut: it only goes into a sentence. */
const maxReasonBytes = 1024;
const maxNameBytes = 64 * 1024;
/** Of what the server sent, errors keep this much (it is for causes). */
const maxReceivedBytes = 64;

/** SetEncodings (client message 2). */
export function encodeSetEncodings(encodings: readonly number[]): Buffer {
  const b = Buffer.alloc(4 + 4 * encodings.length);
  b.writeUInt8(2, 0);
  b.writeUInt16BE(encodings.length, 2);
  for (const [i, encoding] of encodings.entries()) b.writeInt32BE(encoding, 4 + 4 * i);
  return b;
}

/** FramebufferUpdateRequest (client message 3). */
export function encodeFramebufferUpdateRequest(request: UpdateRequest): Buffer {
  const b = Buffer.alloc(10);
  b.writeUInt8(3, 0);
  b.writeUInt8(request.incremental ? 1 : 0, 1);
  b.writeUInt16BE(request.x ?? 0, 2);
  b.writeUInt16BE(request.y ?? 0, 4);
  b.writeUInt16BE(request.width, 6);
  b.writeUInt16BE(request.height, 8);
  return b;
}

type Phase = 'banner' | 'security' | 'init' | 'ready';

/**
 * The client side of one RFB connection. It starts listening to the transport when constructed,
 * so no byte is missed; reads are one at a time. Phases: banner → security → init → ready; each
 * step refuses to run out of order.
 */
export class RfbClient {
  readonly #transport: RfbTransport;
  readonly #readTimeoutMs: number | undefined;
  readonly #signal: AbortSignal | undefined;
  #chunks: Buffer[] = [];
  #length = 0;
  #waiter: { n: number; wake: () => void; fail: (error: RfbError) => void } | null = null;
  /** Set once the connection can bring no more bytes: what every later short read fails with. */
  #ended: (() => RfbError) | null = null;
  #phase: Phase = 'banner';
  #banner = '';
  #version: RfbVersion = '3.8';
  #bytesPerPixel = 4;

  /**
   * `signal`: aborting it fails the pending and later reads (ETIMEDOUT when its reason is a
   * TimeoutError, ABORT_ERR otherwise). `readTimeoutMs`: each read's own limit unless it names one.
   */
  constructor(transport: RfbTransport, options: { signal?: AbortSignal | undefined; readTimeoutMs?: number | undefined } = {}) {
    this.#transport = transport;
    this.#readTimeoutMs = options.readTimeoutMs;
    this.#signal = options.signal;
    transport.onData((chunk) => {
      this.#chunks.push(chunk);
      this.#length += chunk.length;
      if (this.#waiter && this.#length >= this.#waiter.n) this.#waiter.wake();
    });
    transport.onClose((error) =>
      this.#end(() =>
        error
          ? new RfbError(error.code ?? 'EIO', `${error.message} ${this.progress}`, this.progress, this.#peek(), { cause: error })
          : new RfbError('ECONNRESET', `closed ${this.progress}`, this.progress, this.#peek()),
      ),
    );
    if (this.#signal?.aborted) this.#onAbort();
    else this.#signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  /** Where the exchange has got to, as a sentence part: "before the RFB banner", "after the banner RFB 003.008, during the security handshake". */
  get progress(): string {
    const sentences: Record<Phase, string> = {
      banner: 'before the RFB banner',
      security: `after the banner ${this.#banner}, during the security handshake`,
      init: `after the security handshake (${this.#banner}), before ServerInit`,
      ready: `after the handshake (${this.#banner})`,
    };
    return sentences[this.#phase];
  }

  /** Bytes received and not read yet. */
  get buffered(): number {
    return this.#length;
  }

  /** Sends raw bytes (a message this client has no method for). */
  write(data: Buffer): void {
    this.#transport.write(data);
  }

  /** Closes the transport; pending reads fail with ECONNRESET. Idempotent. */
  close(): void {
    this.#signal?.removeEventListener('abort', this.#onAbort);
    this.#transport.close();
  }

  /** Exactly `n` bytes, once they have arrived. */
  async read(n: number, timeoutMs = this.#readTimeoutMs): Promise<Buffer> {
    await this.#wait(n, timeoutMs);
    return this.#take(n);
  }

  /** Discards exactly `n` bytes without gathering them (frames can be megabytes). */
  async skip(n: number, timeoutMs = this.#readTimeoutMs): Promise<void> {
    let left = n;
    while (left > 0) {
      await this.#wait(1, timeoutMs);
      while (left > 0 && this.#chunks.length > 0) {
        const head = this.#chunks[0]!;
        const dropped = Math.min(head.length, left);
        if (dropped === head.length) this.#chunks.shift();
        else this.#chunks[0] = head.subarray(dropped);
        this.#length -= dropped;
        left -= dropped;
      }
    }
  }

  /** The server's 12-byte ProtocolVersion banner (`RFB 003.008\n`); EPROTO when it is not one. The banner-only probe stops here. */
  async readBanner(): Promise<string> {
    this.#expect('banner', 'readBanner');
    const bytes = await this.read(bannerBytes);
    const text = bytes.toString('latin1');
    const match = /^RFB (\d{3})\.(\d{3})\n$/.exec(text);
    if (!match) throw new RfbError('EPROTO', 'not an RFB server', this.progress, text);
    this.#banner = text.trim();
    // 3.7 and 3.8 as they are; anything older is 3.3, anything newer 3.8.
    const minor = Number(match[2]);
    this.#version = Number(match[1]) > 3 || minor >= 8 ? '3.8' : minor === 7 ? '3.7' : '3.3';
    this.#phase = 'security';
    return text;
  }

  /**
   * Banner, version and security type None, up to the server's security result (3.8) or the
   * choice of None (3.7: the server sends no result for it). Rejects EACCES, with the server's
   * reason when it gives one.
   */
  async authenticate(): Promise<RfbAuthenticated> {
    if (this.#phase === 'banner') await this.readBanner();
    this.#expect('security', 'authenticate');
    this.write(Buffer.from(`RFB 003.00${this.#version.slice(2)}\n`, 'latin1'));
    if (this.#version === '3.3') {
      // 3.3: the server picks the type (a u32); 0 means refused, with a reason.
      const type = (await this.read(4)).readUInt32BE(0);
      if (type === 0) throw await this.#refusal();
      if (type !== securityNone) throw this.#error('EACCES', `the VNC server asks for security type ${type}, not None`);
    } else {
      const count = (await this.read(1))[0]!;
      if (count === 0) throw await this.#refusal();
      const types = [...(await this.read(count))];
      if (!types.includes(securityNone)) throw this.#error('EACCES', `the VNC server offers security types ${types.join(', ')}, not None (1)`);
      this.write(Buffer.from([securityNone]));
      if (this.#version === '3.8') {
        const result = (await this.read(4)).readUInt32BE(0);
        if (result !== 0) throw await this.#refusal();
      }
    }
    this.#phase = 'init';
    return { banner: this.#banner, version: this.#version, security: 'None' };
  }

  /** ClientInit (shared unless told otherwise) and the server's ServerInit: size, pixel format, name. */
  async initialise(options: { shared?: boolean } = {}): Promise<RfbServerInit> {
    this.#expect('init', 'initialise');
    this.write(Buffer.from([options.shared === false ? 0 : 1]));
    const init = await this.read(24);
    const nameLength = init.readUInt32BE(20);
    if (nameLength > maxNameBytes) throw this.#error('EPROTO', `ServerInit names a desktop of ${nameLength} bytes`);
    const name = (await this.read(nameLength)).toString('utf8');
    const bitsPerPixel = init.readUInt8(4);
    this.#bytesPerPixel = Math.max(1, bitsPerPixel / 8);
    this.#phase = 'ready';
    return { width: init.readUInt16BE(0), height: init.readUInt16BE(2), name, bitsPerPixel, depth: init.readUInt8(5) };
  }

  /** The whole handshake: authenticate, then initialise. */
  async handshake(options: { shared?: boolean } = {}): Promise<RfbHandshake> {
    const authenticated = await this.authenticate();
    return { ...authenticated, ...(await this.initialise(options)) };
  }

  setEncodings(encodings: readonly number[]): void {
    this.write(encodeSetEncodings(encodings));
  }

  requestUpdate(request: UpdateRequest): void {
    this.write(encodeFramebufferUpdateRequest(request));
  }

  /**
   * Reads up to and including the next FramebufferUpdate, passing over Bell and ServerCutText.
   * Reads raw rectangles (pixels skipped, not kept) and the DesktopSize pseudo-rectangle; any
   * other encoding is EPROTO, so ask for these with setEncodings first.
   */
  async readFramebufferUpdate(options: { timeoutMs?: number } = {}): Promise<FramebufferUpdate> {
    this.#expect('ready', 'readFramebufferUpdate');
    const timeoutMs = options.timeoutMs ?? this.#readTimeoutMs;
    for (;;) {
      const type = (await this.read(1, timeoutMs))[0];
      if (type === 0) break;
      if (type === 2) continue; // Bell
      if (type === 3) {
        // ServerCutText: 3 bytes padding, a u32 length, the text.
        const length = (await this.read(7, timeoutMs)).readUInt32BE(3);
        await this.skip(length, timeoutMs);
        continue;
      }
      throw this.#error('EPROTO', `unexpected server message ${type}`);
    }
    const count = (await this.read(3, timeoutMs)).readUInt16BE(1);
    const rectangles: RfbRectangle[] = [];
    let bytes = 4;
    for (let i = 0; i < count; i++) {
      const header = await this.read(12, timeoutMs);
      const rectangle = {
        x: header.readUInt16BE(0),
        y: header.readUInt16BE(2),
        width: header.readUInt16BE(4),
        height: header.readUInt16BE(6),
        encoding: header.readInt32BE(8),
      };
      bytes += 12;
      if (rectangle.encoding === rfbEncodings.raw) {
        const pixels = rectangle.width * rectangle.height * this.#bytesPerPixel;
        await this.skip(pixels, timeoutMs);
        bytes += pixels;
      } else if (rectangle.encoding !== rfbEncodings.desktopSize) {
        throw this.#error('EPROTO', `unexpected encoding ${rectangle.encoding}`);
      }
      rectangles.push(rectangle);
    }
    return { rectangles, bytes };
  }

  #expect(phase: Phase, step: string): void {
    if (this.#phase !== phase) throw new Error(`RfbClient.${step}() needs phase ${phase}, the client is at ${this.#phase}`);
  }

  #error(code: string, message: string): RfbError {
    return new RfbError(code, message, this.progress, this.#peek());
  }

  /** A refusal's reason string (a u32 length, then the text) as an EACCES. */
  async #refusal(): Promise<RfbError> {
    const length = (await this.read(4)).readUInt32BE(0);
    const reason = (await this.read(Math.min(length, maxReasonBytes))).toString('utf8');
    // TigerVNC's answer to a client it has blacklisted.
    const hint = /too many security failures/i.test(reason)
      ? ' (TigerVNC blacklists a socket after repeated unauthenticated connections, for 10 s and more)'
      : '';
    return this.#error('EACCES', `the VNC server refuses viewers: "${reason}"${hint}`);
  }

  readonly #onAbort = (): void => {
    const reason = this.#signal?.reason as Error | undefined;
    const code = reason?.name === 'TimeoutError' ? 'ETIMEDOUT' : 'ABORT_ERR';
    this.#end(() => new RfbError(code, `no answer ${this.progress}`, this.progress, this.#peek(), { cause: reason }));
  };

  #end(failure: () => RfbError): void {
    if (this.#ended) return;
    this.#ended = failure;
    this.#signal?.removeEventListener('abort', this.#onAbort);
    this.#waiter?.fail(failure());
  }

  #wait(n: number, timeoutMs: number | undefined): Promise<void> {
    if (this.#length >= n) return Promise.resolve();
    if (this.#ended) return Promise.reject(this.#ended());
    if (this.#waiter) return Promise.reject(new Error('RfbClient: one read at a time'));
    return new Promise((resolve, reject) => {
      const timer =
        timeoutMs === undefined
          ? null
          : setTimeout(
              () =>
                done(
                  new RfbError(
                    'ETIMEDOUT',
                    `no answer ${this.progress} within ${timeoutMs} ms (wanted ${n} bytes, have ${this.#length})`,
                    this.progress,
                    this.#peek(),
                  ),
                ),
              timeoutMs,
            );
      const done = (error?: RfbError): void => {
        if (timer) clearTimeout(timer);
        this.#waiter = null;
        if (error) reject(error);
        else resolve();
      };
      this.#waiter = { n, wake: () => done(), fail: (error) => done(error) };
    });
  }

  #take(n: number): Buffer {
    const head = this.#chunks[0];
    let out: Buffer;
    if (head && head.length >= n) {
      out = head.subarray(0, n);
      if (head.length === n) this.#chunks.shift();
      else this.#chunks[0] = head.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let at = 0;
      while (at < n) {
        const chunk = this.#chunks[0]!;
        const used = Math.min(chunk.length, n - at);
        chunk.copy(out, at, 0, used);
        at += used;
        if (used === chunk.length) this.#chunks.shift();
        else this.#chunks[0] = chunk.subarray(used);
      }
    }
    this.#length -= n;
    return out;
  }

  /** The unread bytes, latin1, cut: for causes. */
  #peek(): string {
    let text = '';
    for (const chunk of this.#chunks) {
      text += chunk.subarray(0, maxReceivedBytes - text.length).toString('latin1');
      if (text.length >= maxReceivedBytes) break;
    }
    return text;
  }
}

/**
 * The banner-only probe: reads the server's banner and closes the transport. Rejects with an
 * RfbError: EPROTO (with what it sent), ECONNRESET, the signal's ETIMEDOUT/ABORT_ERR, or the
 * transport's error. Note that TigerVNC counts such a connection as a failed login unless Xvnc runs
 * with -UseBlacklist=0 (porthole's sandboxes do); `authenticate` leaves without being counted.
 */
export async function probeRfbBanner(transport: RfbTransport, options: { signal?: AbortSignal } = {}): Promise<string> {
  const client = new RfbClient(transport, options);
  try {
    return await client.readBanner();
  } finally {
    client.close();
  }
}
