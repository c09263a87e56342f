import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, rm, unlink } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { connectEndpoint } from '../../src/drivers/endpoint-probes.js';
import type { Endpoint } from '../../src/drivers/driver.js';
import { AppError } from '../../src/protocol/errors.js';
import { until } from '../support/until.js';

// The red team's relay race, against the one door every connection to a sandbox socket goes
// through (connectEndpoint with a pin): a process of the sandbox's uid swaps its socket entry
// between its real socket and a symlink to a root-only host socket as fast as it can, while this
// (root) process connects hundreds of times, forcing a fresh pin each time. The host socket must
// never see a connection; every connection that succeeds reaches the sandbox's own server.

const isRoot = process.getuid?.() === 0;
const sandboxUid = 61_197;
let dir = '';
let hostServer: Server | undefined;
let hostConnections = 0;
const children: ChildProcess[] = [];

function spawnAsSandbox(script: string, cwd: string): ChildProcess {
  const child = spawn(process.execPath, ['-e', script], { cwd, uid: sandboxUid, gid: sandboxUid, stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  return child;
}

before(async () => {
  assert.ok(isRoot, 'this test needs root: it proves a root process cannot be steered to a root-only socket');
  dir = await mkdtemp(join(tmpdir(), 'porthole-test-'));
  await chmod(dir, 0o711);
  // The root-only host socket: a 0700 directory, a 0600 socket (a Docker socket's shape).
  const secret = join(dir, 'secret');
  await mkdir(secret, { mode: 0o700 });
  hostServer = createServer((socket) => {
    hostConnections++;
    socket.end('HOST');
  });
  await new Promise<void>((resolve) => hostServer!.listen(join(secret, 'host.sock'), resolve));
  await chmod(join(secret, 'host.sock'), 0o600);
  // The sandbox's run directory (its uid's) and porthole's pin directory (root's only).
  await mkdir(join(dir, 'run'), { mode: 0o700 });
  await chown(join(dir, 'run'), sandboxUid, sandboxUid);
  await mkdir(join(dir, 'sockets'), { mode: 0o700 });
});

after(async () => {
  for (const child of children) child.kill('SIGKILL');
  await new Promise((resolve) => hostServer?.close(resolve) ?? resolve(undefined));
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('a sandbox swapping its socket for a symlink to a root-only host socket never gets the server to connect there', async () => {
  const run = join(dir, 'run');
  // The sandbox's own server, then the swapper, both as the sandbox's uid.
  const real = spawnAsSandbox(`require('net').createServer((s) => s.end('REAL')).listen('vnc.sock', () => console.log('listening'))`, run);
  await new Promise<void>((resolve) => real.stdout!.once('data', () => resolve()));
  const swapper = spawnAsSandbox(
    `const fs = require('fs');
     fs.linkSync('vnc.sock', 'real.sock');
     console.log('swapping');
     const target = ${JSON.stringify(join(dir, 'secret', 'host.sock'))};
     const end = Date.now() + 60000;
     for (let n = 0; Date.now() < end; n++) {
       try { fs.symlinkSync(target, 'evil'); fs.renameSync('evil', 'vnc.sock'); } catch {}
       try { fs.linkSync('real.sock', 'good'); fs.renameSync('good', 'vnc.sock'); } catch {}
     }`,
    run,
  );
  await new Promise<void>((resolve) => swapper.stdout!.once('data', () => resolve()));

  const endpoint: Endpoint = { kind: 'unix', path: join(dir, 'sockets', 'vnc.sock'), pin: { source: join(run, 'vnc.sock'), uid: sandboxUid } };
  const outcomes = new Map<string, number>();
  const attempts = 500;
  for (let i = 0; i < attempts; i++) {
    // A fresh pin every time (as after the sandbox's VNC server restarted): the race is at the pin.
    await unlink(endpoint.path).catch(() => {});
    let outcome: string;
    try {
      const socket = await connectEndpoint(endpoint);
      outcome = await new Promise<string>((resolve) => {
        let text = '';
        socket.on('data', (chunk) => (text += chunk.toString()));
        socket.once('close', () => resolve(text));
        socket.once('error', () => resolve(`error:${text}`));
      });
    } catch (error) {
      assert.ok(error instanceof AppError && error.code === 'SANDBOX_UNREACHABLE', String(error));
      outcome = `refused:${String((error.details as { code?: string }).code)}`;
    }
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
  }
  swapper.kill('SIGKILL');
  const summary = JSON.stringify(Object.fromEntries(outcomes));
  assert.equal(hostConnections, 0, `the root-only host socket was reached: ${summary}`);
  assert.deepEqual(
    [...outcomes.keys()].filter((o) => o !== 'REAL' && o !== 'refused:ENOTSOCK' && o !== 'refused:ENOENT'),
    [],
    `every connection reached the sandbox's own server or was refused as not a socket: ${summary}`,
  );
  // Both sides of the race happened: the swap was caught, and real connections went through.
  assert.ok((outcomes.get('REAL') ?? 0) > attempts / 20, `too few real connections to say anything: ${summary}`);
  assert.ok((outcomes.get('refused:ENOTSOCK') ?? 0) > 0, `the swapper never won a pin attempt, so the race was not exercised: ${summary}`);
});

test('a socket that is not the sandbox uid’s is never pinned (EPERM), even a real one', async () => {
  // A socket root owns in the sandbox's directory (as if hard-linked from elsewhere): refused by owner.
  const other = createServer((socket) => socket.end('ROOT'));
  const source = join(dir, 'run', 'root.sock');
  await new Promise<void>((resolve) => other.listen(source, resolve));
  try {
    const endpoint: Endpoint = { kind: 'unix', path: join(dir, 'sockets', 'root.sock'), pin: { source, uid: sandboxUid } };
    const error = await connectEndpoint(endpoint).then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(error instanceof AppError, String(error));
    assert.equal((error.details as { code?: string }).code, 'EPERM');
    assert.match(String((error.details as { reason?: string }).reason), /belongs to uid 0, not the sandbox's 61197/);
  } finally {
    await new Promise((resolve) => other.close(resolve));
  }
});

test('a pin whose server restarted (new inode) is pinned again on ECONNREFUSED', async () => {
  const run = join(dir, 'run');
  const first = spawnAsSandbox(`require('net').createServer((s) => s.end('ONE')).listen('restart.sock', () => console.log('listening'))`, run);
  await new Promise<void>((resolve) => first.stdout!.once('data', () => resolve()));
  const endpoint: Endpoint = { kind: 'unix', path: join(dir, 'sockets', 'restart.sock'), pin: { source: join(run, 'restart.sock'), uid: sandboxUid } };
  const read = async () => {
    const socket = await connectEndpoint(endpoint);
    return new Promise<string>((resolve) => {
      let text = '';
      socket.on('data', (chunk) => (text += chunk.toString()));
      socket.once('close', () => resolve(text));
    });
  };
  assert.equal(await read(), 'ONE');
  first.kill('SIGKILL');
  await until(
    'the first server to be gone',
    () => first.exitCode !== null || first.signalCode !== null,
    (gone) => gone,
    5_000,
  );
  const second = spawnAsSandbox(
    `try { require('fs').unlinkSync('restart.sock') } catch {}; require('net').createServer((s) => s.end('TWO')).listen('restart.sock', () => console.log('listening'))`,
    run,
  );
  await new Promise<void>((resolve) => second.stdout!.once('data', () => resolve()));
  assert.equal(await read(), 'TWO');
});
