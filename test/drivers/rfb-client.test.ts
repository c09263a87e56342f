import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import type { Endpoint } from '../../src/drivers/driver.js';
import { readRfbBanner } from '../../src/drivers/endpoint-probes.js';
import { probeRfbBanner, RfbClient, rfbEncodings, RfbError, socketTransport, webSocketTransport } from '../../src/drivers/rfb-client.js';
import { AppError } from '../../src/protocol/errors.js';
import { until } from '../support/until.js';

// The one RFB client: against a real Xvnc (the server porthole's sandboxes run) for the handshake,
// frames and the banner probe, over a unix socket and over a WebSocket; against scripted fake
// servers for what Xvnc will not do on demand (other versions, refusals, a close mid-handshake).

const width = 320;
const height = 200;
let dir = '';
let xvnc: ChildProcess | null = null;
let xvncLog = '';
let vncSocket = '';

function connectUnix(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    socket.once('connect', () => resolve(socket)).once('error', reject);
  });
}

/** Starts Xvnc on a display nobody uses; tries another display when it loses a race for one. */
async function startXvnc(): Promise<void> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const display = 200 + Math.floor(Math.random() * 700);
    if (existsSync(`/tmp/.X${display}-lock`) || existsSync(`/tmp/.X11-unix/X${display}`)) continue;
    xvncLog = '';
    const child = spawn(
      'Xvnc',
      [
        `:${display}`,
        '-rfbport',
        '-1',
        '-rfbunixpath',
        vncSocket,
        '-SecurityTypes',
        'None',
        '-nolisten',
        'tcp',
        '-nolisten',
        'local',
        '-UseBlacklist=0',
        '-geometry',
        `${width}x${height}`,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    child.stderr!.on('data', (chunk: Buffer) => (xvncLog += chunk.toString()));
    xvnc = child;
    const exited = new Promise<null>((resolve) => child.once('exit', () => resolve(null)));
    const listening = until('Xvnc listens', () => existsSync(vncSocket), Boolean, 15_000, { intervalMs: 50 });
    if ((await Promise.race([listening, exited])) !== null) return;
    xvnc = null;
  }
  throw new Error(`Xvnc did not start:\n${xvncLog}`);
}

async function stopXvnc(): Promise<void> {
  const child = xvnc;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
  await exited;
  clearTimeout(timer);
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'porthole-test-'));
  vncSocket = join(dir, 'vnc.sock');
  await startXvnc();
});

after(async () => {
  await stopXvnc();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('against a real Xvnc', () => {
  test('the handshake: banner, 3.8, security None, ServerInit with size and name', async () => {
    const client = new RfbClient(socketTransport(await connectUnix(vncSocket)), { readTimeoutMs: 5_000 });
    try {
      const result = await client.handshake();
      assert.equal(result.banner, 'RFB 003.008');
      assert.equal(result.version, '3.8');
      assert.equal(result.security, 'None');
      assert.deepEqual({ width: result.width, height: result.height }, { width, height });
      assert.equal(result.bitsPerPixel, 32);
      assert.ok(result.name.length > 0, 'Xvnc names its desktop');
      assert.equal(client.progress, 'after the handshake (RFB 003.008)');
    } finally {
      client.close();
    }
  });

  test('a full raw frame, then a small region', async () => {
    const client = new RfbClient(socketTransport(await connectUnix(vncSocket)), { readTimeoutMs: 5_000 });
    try {
      await client.handshake();
      client.setEncodings([rfbEncodings.raw]);
      client.requestUpdate({ width, height });
      const full = await client.readFramebufferUpdate();
      assert.ok(
        full.rectangles.every((r) => r.encoding === rfbEncodings.raw),
        JSON.stringify(full.rectangles),
      );
      const area = full.rectangles.reduce((sum, r) => sum + r.width * r.height, 0);
      assert.equal(area, width * height, 'the rectangles cover the framebuffer');
      assert.equal(full.bytes, 4 + 12 * full.rectangles.length + area * 4);
      client.requestUpdate({ x: 10, y: 20, width: 4, height: 4 });
      const small = await client.readFramebufferUpdate();
      assert.deepEqual(
        small.rectangles.map((r) => [r.x, r.y, r.width, r.height, r.encoding]),
        [[10, 20, 4, 4, rfbEncodings.raw]],
      );
      assert.equal(client.buffered, 0, 'nothing left unread');
    } finally {
      client.close();
    }
  });

  test('the banner-only probe, on its own and as the driver probe reads it', async () => {
    assert.equal(await probeRfbBanner(socketTransport(await connectUnix(vncSocket))), 'RFB 003.008\n');
    const endpoint: Endpoint = { kind: 'unix', path: vncSocket };
    for (let i = 0; i < 6; i++) assert.equal(await readRfbBanner(endpoint, { timeoutMs: 5_000 }), 'RFB 003.008\n');
    // Six banner-only connections: without -UseBlacklist=0 this one would be refused.
    const client = new RfbClient(socketTransport(await connectUnix(vncSocket)), { readTimeoutMs: 5_000 });
    try {
      assert.equal((await client.authenticate()).security, 'None');
    } finally {
      client.close();
    }
  });

  test('over a WebSocket that carries the stream, as the relay does', async () => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false });
    wss.on('connection', (ws) => {
      const vnc = connect(vncSocket);
      vnc.on('error', () => ws.terminate());
      vnc.on('data', (chunk) => ws.send(chunk));
      ws.on('message', (data: Buffer) => vnc.write(data));
      vnc.on('close', () => ws.close());
      ws.on('close', () => vnc.destroy());
    });
    await new Promise((resolve) => wss.once('listening', resolve));
    const ws = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`, { perMessageDeflate: false });
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const client = new RfbClient(webSocketTransport(ws), { readTimeoutMs: 5_000 });
    try {
      const result = await client.handshake();
      assert.deepEqual({ width: result.width, height: result.height }, { width, height });
      client.setEncodings([rfbEncodings.raw]);
      client.requestUpdate({ width: 8, height: 8 });
      assert.equal((await client.readFramebufferUpdate()).bytes, 4 + 12 + 8 * 8 * 4);
    } finally {
      client.close();
      for (const peer of wss.clients) peer.terminate();
      await new Promise((resolve) => wss.close(resolve));
    }
  });
});

// ---- fake servers ----------------------------------------------------------------------------

/** A TCP server on 127.0.0.1 that runs `script` for each connection, with an RfbClient as its byte reader. */
async function fakeServer(script: (socket: Socket, peer: RfbClient) => Promise<void>): Promise<{ endpoint: Endpoint; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    script(socket, new RfbClient(socketTransport(socket), { readTimeoutMs: 5_000 })).catch(() => socket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: { kind: 'tcp', host: '127.0.0.1', port },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

async function clientOf(endpoint: Endpoint, options: { signal?: AbortSignal } = {}): Promise<RfbClient> {
  if (endpoint.kind !== 'tcp') throw new Error('tcp only');
  const socket = await new Promise<Socket>((resolve, reject) => {
    const s = connect(endpoint.port, endpoint.host);
    s.once('connect', () => resolve(s)).once('error', reject);
  });
  return new RfbClient(socketTransport(socket), { readTimeoutMs: 5_000, ...options });
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function reasonOf(text: string): Buffer {
  return Buffer.concat([u32(Buffer.byteLength(text)), Buffer.from(text)]);
}

function serverInit(name: string): Buffer {
  const init = Buffer.alloc(24);
  init.writeUInt16BE(640, 0);
  init.writeUInt16BE(480, 2);
  init.writeUInt8(32, 4);
  init.writeUInt8(24, 5);
  init.writeUInt32BE(Buffer.byteLength(name), 20);
  return Buffer.concat([init, Buffer.from(name)]);
}

/** Expects the client's bytes, or fails the script (and so closes the connection). */
async function expectBytes(peer: RfbClient, expected: Buffer): Promise<void> {
  const got = await peer.read(expected.length);
  if (!got.equals(expected)) throw new Error(`client sent ${JSON.stringify(got.toString('latin1'))}`);
}

async function rejectsWith(promise: Promise<unknown>, code: string, message: string | RegExp): Promise<RfbError> {
  const error = await promise.then(
    () => assert.fail('expected a rejection'),
    (e: unknown) => e,
  );
  assert.ok(error instanceof RfbError, String(error));
  assert.equal(error.code, code, error.message);
  if (typeof message === 'string') assert.equal(error.message, message);
  else assert.match(error.message, message);
  return error;
}

describe('against fake servers', () => {
  test('3.3: the server picks None; ClientInit and ServerInit follow', async () => {
    const fake = await fakeServer(async (socket, peer) => {
      socket.write('RFB 003.003\n');
      await expectBytes(peer, Buffer.from('RFB 003.003\n'));
      socket.write(u32(1));
      await expectBytes(peer, Buffer.from([1]));
      socket.write(serverInit('three-three'));
    });
    const client = await clientOf(fake.endpoint);
    try {
      assert.deepEqual(await client.handshake(), {
        banner: 'RFB 003.003',
        version: '3.3',
        security: 'None',
        width: 640,
        height: 480,
        name: 'three-three',
        bitsPerPixel: 32,
        depth: 24,
      });
    } finally {
      client.close();
      await fake.close();
    }
  });

  test('3.7: None chosen, no security result; an older or newer banner settles on 3.3 or 3.8', async () => {
    const fake = await fakeServer(async (socket, peer) => {
      socket.write('RFB 003.007\n');
      await expectBytes(peer, Buffer.from('RFB 003.007\n'));
      socket.write(Buffer.from([2, 2, 1]));
      await expectBytes(peer, Buffer.from([1, 0])); // None, then ClientInit not shared
      socket.write(serverInit('seven'));
    });
    const client = await clientOf(fake.endpoint);
    try {
      const result = await client.handshake({ shared: false });
      assert.deepEqual([result.version, result.name], ['3.7', 'seven']);
    } finally {
      client.close();
      await fake.close();
    }
    for (const [banner, answer] of [
      ['RFB 003.005\n', 'RFB 003.003\n'],
      ['RFB 003.889\n', 'RFB 003.008\n'],
    ] as const) {
      let answered = '';
      const other = await fakeServer(async (socket, peer) => {
        socket.write(banner);
        answered = (await peer.read(12)).toString('latin1');
        socket.end();
      });
      const c = await clientOf(other.endpoint);
      await c.authenticate().catch(() => {});
      c.close();
      await other.close();
      assert.equal(answered, answer, `answer to ${JSON.stringify(banner)}`);
    }
  });

  test('a wrong banner is EPROTO with what the server sent, for the client and for the driver probe', async () => {
    const fake = await fakeServer(async (socket) => void socket.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    try {
      const client = await clientOf(fake.endpoint);
      const error = await rejectsWith(client.handshake(), 'EPROTO', 'not an RFB server');
      assert.equal(error.received, 'HTTP/1.1 400');
      assert.equal(error.progress, 'before the RFB banner');
      client.close();
      const probe = await readRfbBanner(fake.endpoint).then(
        () => assert.fail('expected a rejection'),
        (e: unknown) => e,
      );
      assert.ok(probe instanceof AppError);
      assert.equal(probe.code, 'SANDBOX_UNREACHABLE');
      assert.deepEqual(probe.details, { endpoint: `tcp:127.0.0.1:${(fake.endpoint as { port: number }).port}`, code: 'EPROTO', received: 'HTTP/1.1 400' });
    } finally {
      await fake.close();
    }
  });

  test('security refused with a reason is EACCES naming it (and TigerVNC’s blacklist when that is the reason)', async () => {
    const fake = await fakeServer(async (socket, peer) => {
      socket.write('RFB 003.008\n');
      await expectBytes(peer, Buffer.from('RFB 003.008\n'));
      socket.write(Buffer.from([1, 1]));
      await expectBytes(peer, Buffer.from([1]));
      socket.end(Buffer.concat([u32(1), reasonOf('Too many security failures')]));
    });
    try {
      const client = await clientOf(fake.endpoint);
      const error = await rejectsWith(
        client.authenticate(),
        'EACCES',
        'the VNC server refuses viewers: "Too many security failures" (TigerVNC blacklists a socket after repeated unauthenticated connections, for 10 s and more)',
      );
      assert.equal(error.progress, 'after the banner RFB 003.008, during the security handshake');
      client.close();
    } finally {
      await fake.close();
    }
  });

  test('no security types (a reason instead), or no None among them, is EACCES', async () => {
    const cases: { banner: string; offer: Buffer; message: string }[] = [
      { banner: 'RFB 003.008\n', offer: Buffer.concat([Buffer.from([0]), reasonOf('go away')]), message: 'the VNC server refuses viewers: "go away"' },
      { banner: 'RFB 003.008\n', offer: Buffer.from([2, 2, 16]), message: 'the VNC server offers security types 2, 16, not None (1)' },
      { banner: 'RFB 003.003\n', offer: u32(2), message: 'the VNC server asks for security type 2, not None' },
      { banner: 'RFB 003.003\n', offer: Buffer.concat([u32(0), reasonOf('no')]), message: 'the VNC server refuses viewers: "no"' },
    ];
    for (const { banner, offer, message } of cases) {
      const fake = await fakeServer(async (socket, peer) => {
        socket.write(banner);
        await peer.read(12);
        socket.write(offer);
      });
      const client = await clientOf(fake.endpoint);
      await rejectsWith(client.authenticate(), 'EACCES', message);
      client.close();
      await fake.close();
    }
  });

  test('a close mid-handshake is ECONNRESET saying where; a close mid-banner keeps what came', async () => {
    const afterBanner = await fakeServer(async (socket) => void socket.end('RFB 003.008\n'));
    const midBanner = await fakeServer(async (socket) => void socket.end('RFB 00'));
    try {
      const client = await clientOf(afterBanner.endpoint);
      await rejectsWith(client.handshake(), 'ECONNRESET', 'closed after the banner RFB 003.008, during the security handshake');
      client.close();
      const probe = await readRfbBanner(midBanner.endpoint).then(
        () => assert.fail('expected a rejection'),
        (e: unknown) => e,
      );
      assert.ok(probe instanceof AppError);
      assert.equal((probe.cause as Error).message, 'closed before the RFB banner');
      assert.deepEqual(probe.details, { endpoint: `tcp:127.0.0.1:${(midBanner.endpoint as { port: number }).port}`, code: 'ECONNRESET', received: 'RFB 00' });
    } finally {
      await afterBanner.close();
      await midBanner.close();
    }
  });

  test('a silent server: the signal’s timeout is ETIMEDOUT saying where, as is a read’s own limit', async () => {
    const fake = await fakeServer(async () => {});
    try {
      const timed = await clientOf(fake.endpoint, { signal: AbortSignal.timeout(100) });
      await rejectsWith(timed.readBanner(), 'ETIMEDOUT', 'no answer before the RFB banner');
      timed.close();
      const aborted = new AbortController();
      const cancelled = await clientOf(fake.endpoint, { signal: aborted.signal });
      const pending = cancelled.readBanner();
      aborted.abort();
      await rejectsWith(pending, 'ABORT_ERR', 'no answer before the RFB banner');
      cancelled.close();
      const own = await clientOf(fake.endpoint);
      await rejectsWith(own.read(12, 100), 'ETIMEDOUT', 'no answer before the RFB banner within 100 ms (wanted 12 bytes, have 0)');
      own.close();
      const probe = await readRfbBanner(fake.endpoint, { timeoutMs: 100 }).then(
        () => assert.fail('expected a rejection'),
        (e: unknown) => e,
      );
      assert.ok(probe instanceof AppError);
      assert.equal((probe.details as { code?: unknown }).code, 'ETIMEDOUT');
    } finally {
      await fake.close();
    }
  });

  test('steps out of order are refused, not sent', async () => {
    const fake = await fakeServer(async (socket) => void socket.write('RFB 003.008\n'));
    const client = await clientOf(fake.endpoint);
    try {
      await assert.rejects(client.initialise(), /needs phase init, the client is at banner/);
      await assert.rejects(client.readFramebufferUpdate(), /needs phase ready/);
    } finally {
      client.close();
      await fake.close();
    }
  });
});
