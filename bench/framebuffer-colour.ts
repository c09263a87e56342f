import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { setTimeout as sleep } from 'node:timers/promises';
import { RfbClient, rfbEncodings, type RfbTransport } from '../src/drivers/rfb-client.js';
import { openUnix } from './rfb-client.js';

// Watches a VNC server's framebuffer for a colour, for the benchmarks that stop their clock when a
// page is drawn (bench/start-to-sign-in.ts). The one RFB client (src/drivers/rfb-client.ts) does
// the handshake; the pixels are read here, because its readFramebufferUpdate skips them on purpose.
//
// The client asks for a pixel format it knows (32 bits, red in the lowest byte), Hextile and raw
// encodings and DesktopSize (TigerVNC drops a client that cannot follow a resize, and porthole's
// viewer resizes the desktop as it connects). Hextile, not raw alone: a repainted browser window is
// 2.5 MB raw, which Xvnc pushes through the socket's buffer a couple of hundred KB at a time, and on
// a loaded machine that made this client see the page up to 0.4 s after noVNC (Tight) did; a flat
// page is a few bytes a tile in Hextile, which is still simple to decode. It keeps no pixels: for
// each pixel of the watched area only whether it matches, so a count of matching pixels follows the
// screen through incremental updates at the cost of the updated rectangles alone. The next update
// is asked for as soon as one starts to arrive, so the server never waits for this client's reading.
//
// watchSocketInWorker runs all of it on a thread of its own: a bench that hosts the server in its
// own process (test/support/server.ts) blocks its event loop now and then (PGlite's queries run on
// it), and a watcher sharing that loop saw the page up to a tenth of a second late.

/** What to look for: `minPixels` pixels within `tolerance` of `rgb` (each channel), in the top `topFraction` of the screen. */
export interface ColourTarget {
  readonly rgb: readonly [number, number, number];
  readonly tolerance: number;
  readonly minPixels: number;
  /** The share of the screen's height, from the top, that is looked at (where the browser window is). */
  readonly topFraction: number;
}

/** Wall-clock times in ms (performance.timeOrigin + performance.now(), as a page's own clock reads). */
export interface FramebufferSighting {
  /** The handshake finished. */
  connectedAt: number;
  /** The first framebuffer update had been read. */
  firstUpdateAt: number;
  /** The update that brought the colour to `minPixels` had been read. */
  foundAt: number;
  /** The colour was there in the very first update: the page was drawn before this client connected, so `foundAt` is only an upper bound. */
  wasAlreadyThere: boolean;
}

export const wallClock = (): number => performance.timeOrigin + performance.now();

/** SetPixelFormat (client message 0): 32 bits per pixel, depth 24, little-endian, true colour, red in the lowest byte. */
function rgbxPixelFormat(): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt8(0, 0);
  b.writeUInt8(32, 4); // bits per pixel
  b.writeUInt8(24, 5); // depth
  b.writeUInt8(0, 6); // little-endian
  b.writeUInt8(1, 7); // true colour
  b.writeUInt16BE(255, 8);
  b.writeUInt16BE(255, 10);
  b.writeUInt16BE(255, 12);
  b.writeUInt8(0, 14); // red shift
  b.writeUInt8(8, 15); // green shift
  b.writeUInt8(16, 16); // blue shift
  return b;
}

/** Hextile (RFC 6143 §7.7.4): 16x16 tiles, each raw or a background with subrectangles. */
const hextileEncoding = 5;
const hextile = { raw: 1, backgroundSpecified: 2, foregroundSpecified: 4, anySubrects: 8, subrectsColoured: 16 } as const;

/** Which pixels of the watched area are the target's colour, and how many: what each update changes. */
class MatchMap {
  readonly rows: number;
  readonly #matches: Uint8Array;
  #count = 0;

  constructor(
    readonly width: number,
    readonly height: number,
    readonly target: ColourTarget,
  ) {
    this.rows = Math.round(height * target.topFraction);
    this.#matches = new Uint8Array(width * this.rows);
  }

  get count(): number {
    return this.#count;
  }

  /** Whether the pixel at `at` in `pixels` (RGBX, as rgbxPixelFormat asks) is the target's colour, each channel within the tolerance. */
  isMatch(pixels: Buffer, at: number): boolean {
    const { rgb, tolerance } = this.target;
    return Math.abs(pixels[at]! - rgb[0]) <= tolerance && Math.abs(pixels[at + 1]! - rgb[1]) <= tolerance && Math.abs(pixels[at + 2]! - rgb[2]) <= tolerance;
  }

  /** A rectangle of one colour (a hextile background or subrectangle). */
  fill(x: number, y: number, w: number, h: number, isMatch: boolean): void {
    const flag = isMatch ? 1 : 0;
    for (let row = y; row < Math.min(y + h, this.rows); row++) {
      for (let column = x; column < Math.min(x + w, this.width); column++) {
        const index = row * this.width + column;
        this.#count += flag - this.#matches[index]!;
        this.#matches[index] = flag;
      }
    }
  }

  /** A rectangle of raw pixels, `w` to a row. */
  copy(x: number, y: number, w: number, h: number, pixels: Buffer): void {
    for (let row = 0; row < h && y + row < this.rows; row++) {
      for (let column = 0; column < w && x + column < this.width; column++) {
        const flag = this.isMatch(pixels, (row * w + column) * 4) ? 1 : 0;
        const index = (y + row) * this.width + x + column;
        this.#count += flag - this.#matches[index]!;
        this.#matches[index] = flag;
      }
    }
  }
}

/** Reads one hextile-encoded rectangle into `map`. */
async function readHextile(client: RfbClient, map: MatchMap, x: number, y: number, w: number, h: number): Promise<void> {
  // Background and foreground carry over from one tile to the next, within the rectangle.
  let background = false;
  let foreground = false;
  for (let tileY = y; tileY < y + h; tileY += 16) {
    const tileH = Math.min(16, y + h - tileY);
    for (let tileX = x; tileX < x + w; tileX += 16) {
      const tileW = Math.min(16, x + w - tileX);
      const mask = (await client.read(1))[0]!;
      if (mask & hextile.raw) {
        map.copy(tileX, tileY, tileW, tileH, await client.read(tileW * tileH * 4));
        continue;
      }
      if (mask & hextile.backgroundSpecified) background = map.isMatch(await client.read(4), 0);
      if (mask & hextile.foregroundSpecified) foreground = map.isMatch(await client.read(4), 0);
      map.fill(tileX, tileY, tileW, tileH, background);
      if (!(mask & hextile.anySubrects)) continue;
      const subrects = (await client.read(1))[0]!;
      const isColoured = (mask & hextile.subrectsColoured) !== 0;
      const data = await client.read(subrects * (isColoured ? 6 : 2));
      for (let i = 0, at = 0; i < subrects; i++) {
        const colour = isColoured ? map.isMatch(data, at) : foreground;
        if (isColoured) at += 4;
        const xy = data[at]!;
        const wh = data[at + 1]!;
        at += 2;
        map.fill(tileX + (xy >> 4), tileY + (xy & 15), (wh >> 4) + 1, (wh & 15) + 1, colour);
      }
    }
  }
}

/**
 * Connects over `transport` and reads updates until `target` shows; resolves with the times. Rejects
 * with the RFB client's error when the connection fails or `signal` aborts. Closes the transport either way.
 */
export async function watchFramebufferFor(transport: RfbTransport, target: ColourTarget, signal: AbortSignal): Promise<FramebufferSighting> {
  const client = new RfbClient(transport, { signal });
  try {
    const init = await client.handshake();
    const connectedAt = wallClock();
    client.write(rgbxPixelFormat());
    client.setEncodings([hextileEncoding, rfbEncodings.raw, rfbEncodings.desktopSize]);
    let map = new MatchMap(init.width, init.height, target);
    let firstUpdateAt: number | null = null;
    client.requestUpdate({ incremental: false, width: map.width, height: map.rows });
    for (;;) {
      const type = (await client.read(1))[0];
      if (type === 2) continue; // Bell
      if (type === 3) {
        // ServerCutText: 3 bytes of padding, a u32 length, the text.
        await client.skip((await client.read(7)).readUInt32BE(3));
        continue;
      }
      if (type !== 0) throw new Error(`unexpected RFB server message ${type}`);
      // The next one is asked for now: the server prepares it while this one is read.
      client.requestUpdate({ incremental: true, width: map.width, height: map.rows });
      const rectangles = (await client.read(3)).readUInt16BE(1);
      let isResized = false;
      for (let i = 0; i < rectangles; i++) {
        const header = await client.read(12);
        const x = header.readUInt16BE(0);
        const y = header.readUInt16BE(2);
        const w = header.readUInt16BE(4);
        const h = header.readUInt16BE(6);
        const encoding = header.readInt32BE(8);
        if (encoding === rfbEncodings.desktopSize) {
          // A new screen size: nothing of the old one is known to be there any more.
          map = new MatchMap(w, h, target);
          isResized = true;
        } else if (encoding === hextileEncoding) {
          await readHextile(client, map, x, y, w, h);
        } else if (encoding === rfbEncodings.raw) {
          map.copy(x, y, w, h, await client.read(w * h * 4));
        } else {
          throw new Error(`unexpected RFB encoding ${encoding}`);
        }
      }
      const now = wallClock();
      const isFirst = firstUpdateAt === null;
      firstUpdateAt ??= now;
      if (map.count >= target.minPixels) return { connectedAt, firstUpdateAt, foundAt: now, wasAlreadyThere: isFirst };
      // After a resize the whole new screen is asked for: nothing of it is known yet.
      if (isResized) client.requestUpdate({ incremental: false, width: map.width, height: map.rows });
    }
  } finally {
    client.close();
  }
}

interface WorkerRequest {
  kind: 'framebuffer-colour';
  path: string;
  target: ColourTarget;
  timeoutMs: number;
}

type WorkerAnswer = { sighting: FramebufferSighting } | { error: string };

/**
 * watchFramebufferFor on the unix socket at `path`, on a worker thread. The worker connects as soon
 * as the socket accepts (it retries while the path is missing or refuses), so it may be started
 * before the VNC server is. Rejects when the watch fails, `timeoutMs` passes or `signal` aborts.
 */
export function watchSocketInWorker(path: string, target: ColourTarget, timeoutMs: number, signal: AbortSignal): Promise<FramebufferSighting> {
  const request: WorkerRequest = { kind: 'framebuffer-colour', path, target, timeoutMs };
  const worker = new Worker(new URL(import.meta.url), { workerData: request });
  return new Promise<FramebufferSighting>((resolve, reject) => {
    signal.throwIfAborted();
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
    worker.once('message', (answer: WorkerAnswer) => ('sighting' in answer ? resolve(answer.sighting) : reject(new Error(answer.error))));
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the framebuffer worker exited (${code}) without an answer`)));
  }).finally(() => void worker.terminate());
}

async function connectWhenListening(path: string, signal: AbortSignal): Promise<RfbTransport> {
  for (;;) {
    try {
      return await openUnix(path);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ECONNREFUSED') throw error;
    }
    await sleep(5, undefined, { signal });
  }
}

if (!isMainThread && (workerData as WorkerRequest | null)?.kind === 'framebuffer-colour') {
  const { path, target, timeoutMs } = workerData as WorkerRequest;
  const signal = AbortSignal.timeout(timeoutMs);
  const answer: WorkerAnswer = await connectWhenListening(path, signal)
    .then((transport) => watchFramebufferFor(transport, target, signal))
    .then(
      (sighting) => ({ sighting }),
      (error: Error) => ({ error: `${path}: ${error.message}` }),
    );
  parentPort!.postMessage(answer);
}
