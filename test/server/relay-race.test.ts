import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, unlink } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fetchAgentHealth } from '../../src/drivers/endpoint-probes.js';
import { sandboxesDir } from '../../src/drivers/local-layout.js';
import { readRecord, type SandboxRecord } from '../../src/drivers/local/sandbox-record.js';
import type { SandboxId } from '../../src/protocol/ids.js';
import type { Session } from '../../src/protocol/session.js';
import { freshViewerUrl } from '../support/faults.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { closeViewer, connectViewer } from '../support/ws.js';

// The red team's attack, end to end: a process *inside* a real sandbox, as its user, swaps
// /run/porthole/vnc.sock and agent.sock between their real sockets and symlinks to a root-only host
// socket in a loop, while the server opens the relay (and asks the agent's health) hundreds of
// times — each time after its pin was dropped, as when the sandbox's servers restart, so that every
// connection goes through a fresh pin. The host socket never sees a connection.

let t: TestServer;
let session: Session;
let record: SandboxRecord;
let hostDir = '';
let hostServer: Server | undefined;
let hostConnections = 0;
let swapper: ChildProcess | undefined;

before(async () => {
  hostDir = await mkdtemp(join(tmpdir(), 'porthole-test-'));
  await chmod(hostDir, 0o700);
  await mkdir(join(hostDir, 'secret'), { mode: 0o700 });
  hostServer = createServer((socket) => {
    hostConnections++;
    socket.end('RFB 003.008\n'); // looks like a VNC server: a relay that reached it would be fooled
  });
  await new Promise<void>((resolve) => hostServer!.listen(join(hostDir, 'secret', 'host.sock'), resolve));
  await chmod(join(hostDir, 'secret', 'host.sock'), 0o600);
  t = await startTestServer('relay-race');
  session = await t.readySession();
  record = (await readRecord(join(sandboxesDir(t.dataDir), session.sandboxId!)))!;
  assert.ok(record.agent, 'the sandbox record names its agent');
});

after(async () => {
  swapper?.kill('SIGKILL');
  await t?.stop();
  await new Promise((resolve) => hostServer?.close(resolve) ?? resolve(undefined));
  if (hostDir) await rm(hostDir, { recursive: true, force: true });
});

/** Runs a node script inside the sandbox, as its user, in its namespaces (what the person's terminal can do). */
function insideSandbox(script: string): ChildProcess {
  const args = ['--target', String(record.agent!.pid), '--all', '--root', '--wd', '--setuid', '1000', '--setgid', '1000', '--', '/usr/bin/node', '-e', script];
  return spawn('nsenter', args, { stdio: ['ignore', 'pipe', 'inherit'] });
}

test('a sandbox swapping vnc.sock and agent.sock for symlinks to a root-only host socket never steers the server there', async () => {
  const target = join(hostDir, 'secret', 'host.sock');
  swapper = insideSandbox(`
    const fs = require('fs');
    process.chdir('/run/porthole');
    for (const name of ['vnc', 'agent']) fs.linkSync(name + '.sock', name + '.real');
    console.log('swapping');
    const end = Date.now() + 120000;
    while (Date.now() < end) {
      for (const name of ['vnc', 'agent']) {
        try { fs.symlinkSync(${JSON.stringify(target)}, name + '.evil'); fs.renameSync(name + '.evil', name + '.sock'); } catch {}
        try { fs.linkSync(name + '.real', name + '.good'); fs.renameSync(name + '.good', name + '.sock'); } catch {}
      }
    }`);
  await new Promise<void>((resolve, reject) => {
    swapper!.stdout!.once('data', () => resolve());
    swapper!.once('exit', (code) => reject(new Error(`the swapper exited (${code}) before it started`)));
  });
  const info = await t.server.driver.inspect(session.sandboxId as SandboxId);
  assert.ok(info && info.vnc.kind === 'unix' && info.agent.kind === 'unix');
  const pins = [info.vnc.path, info.agent.path];

  const viewers = { connected: 0, refused: 0 };
  const health = { ok: 0, refused: 0 };
  // At least 200 rounds, and on until the swap has landed under a pin attempt at least once (a busy
  // host may starve the swapper for a while), within 1,000.
  for (let i = 0; i < 1_000 && (i < 200 || viewers.refused + health.refused === 0); i++) {
    for (const pin of pins) await unlink(pin).catch(() => {});
    try {
      const viewer = await connectViewer(freshViewerUrl(t, session.id), { timeoutMs: 5_000 });
      viewers.connected++;
      await closeViewer(viewer);
    } catch {
      viewers.refused++; // the relay found a symlink where the socket should be: 4502, not the host socket
    }
    if (i % 2 === 0) {
      await fetchAgentHealth(info.agent, { timeoutMs: 2_000 }).then(
        () => health.ok++,
        () => health.refused++,
      );
    }
  }
  const summary = JSON.stringify({ viewers, health, hostConnections });
  assert.equal(hostConnections, 0, `the root-only host socket was reached: ${summary}`);
  assert.ok(viewers.connected > 0 && health.ok > 0, `the sandbox's own servers were reached too: ${summary}`);
  assert.ok(viewers.refused + health.refused > 0, `the swap never landed under a pin attempt, so the race was not exercised: ${summary}`);
});
