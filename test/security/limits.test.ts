import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { sandboxLeftovers } from '../../src/drivers/local/local-driver.js';
import type { SandboxId } from '../../src/protocol/ids.js';
import type { Session } from '../../src/protocol/session.js';
import { freshViewerUrl, within } from '../support/faults.js';
import { sandboxProcesses } from '../support/sandbox-processes.js';
import { localSandboxTarget, nodeInSandbox, processesOfUid, spawnInSandbox, type LocalInSandbox, type LocalSandboxTarget } from '../support/sandbox-shell.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { until } from '../support/until.js';
import { closeViewer, connectViewer, expectFramebufferUpdate, type ConnectedViewer } from '../support/ws.js';

// Resource limits under a person who uses them up, from the sandbox's own terminal (a process of
// its user, in its namespaces and its cgroups: test/support/sandbox-shell.ts): a memory hog in one
// sandbox, a fork loop in another. Each of those sessions fails with SANDBOX_LIMIT_REACHED naming
// the limit, its sandbox goes whole, and a third session, watched by a viewer all along, keeps
// its desktop and its viewer.
//
// The limits are small but leave the desktop room: measured on this host, an idle desktop uses
// about 215 MiB and 125 processes and threads (Chromium's threads count against pids.max). The
// home is a tmpfs whose pages count as the sandbox's memory, so it is kept below the memory limit.

const memoryMiB = 512;
const pids = 300;
const homeMiB = 128;

let t: TestServer;
let watched: { session: Session; target: LocalSandboxTarget; viewer: ConnectedViewer };

before(async () => {
  t = await startTestServer('security-limits', {
    PORTHOLE_SANDBOX_MEMORY_MIB: String(memoryMiB),
    PORTHOLE_SANDBOX_PIDS: String(pids),
    PORTHOLE_SANDBOX_HOME_MIB: String(homeMiB),
    PORTHOLE_RECONCILE_INTERVAL_MS: '500',
  });
  const session = await t.readySession();
  const target = await localSandboxTarget(t.dataDir, session.sandboxId!);
  const viewer = await connectViewer(freshViewerUrl(t, session.id));
  await t.waitForState(session.id, ['authenticating'], 5_000);
  watched = { session, target, viewer };
});
after(async () => {
  if (watched) await closeViewer(watched.viewer);
  await t?.stop();
});

const cgroupDir = (target: LocalSandboxTarget, controller: 'memory' | 'pids'): string => {
  const dir = target.cgroupDirs.find((d) => d.split('/').some((segment) => segment.split(',').includes(controller)));
  if (!dir)
    throw new Error(
      `sandbox ${target.sandboxId} has no ${controller} cgroup of its own (its cgroups: ${target.cgroupDirs.join(', ')}); this test needs cgroup v1 memory and pids hierarchies`,
    );
  return dir;
};
const readNumber = async (path: string): Promise<number> => Number((await readFile(path, 'utf8')).trim());

/** The watched session is untouched: still authenticating, its viewer open and its desktop answering. */
async function assertWatchedUnaffected(): Promise<void> {
  const closed = await Promise.race([watched.viewer.closed, new Promise<null>((resolve) => setImmediate(() => resolve(null)))]);
  assert.equal(closed, null, `the watched session's viewer is still open (closed: ${JSON.stringify(closed)})`);
  await expectFramebufferUpdate(watched.viewer);
  assert.equal((await t.api.getSession(watched.session.id)).state, 'authenticating');
}

/** Neither the driver, nor /proc, nor the data directory, nor the cgroup hierarchy keeps anything of the sandbox. */
async function assertNothingLeftOf(target: LocalSandboxTarget): Promise<void> {
  await until(
    `no process of sandbox ${target.sandboxId} remains`,
    () => sandboxProcesses(target.sandboxId),
    (left) => left.length === 0,
    15_000,
  );
  await until(
    `sandbox ${target.sandboxId} is gone from the data directory`,
    () => sandboxLeftovers(t.dataDir, target.sandboxId as SandboxId),
    (left) => left.length === 0,
    15_000,
  );
  assert.ok(!(await t.server.driver.list()).some((s) => s.id === target.sandboxId), 'the driver no longer lists it');
  for (const dir of target.cgroupDirs) assert.ok(!existsSync(dir), `its cgroup ${dir} is removed`);
  await until(
    `no process runs as the sandbox's uid ${target.uid}`,
    () => processesOfUid(target.uid),
    (users) => users.length === 0,
    15_000,
  );
}

/** Starts `argv` in the sandbox, waits for it to print `ready`, moves it into the sandbox's cgroups, then tells it to go. */
async function startInCgroups(target: LocalSandboxTarget, argv: string[]): Promise<LocalInSandbox> {
  const program = spawnInSandbox(target, argv);
  await program.waitForOutput(/ready/);
  await program.joinCgroups();
  program.child.stdin!.write('go\n');
  return program;
}

test('the limits are in place and an idle desktop fits in them', async () => {
  const memory = cgroupDir(watched.target, 'memory');
  const processes = cgroupDir(watched.target, 'pids');
  assert.equal(await readNumber(join(memory, 'memory.limit_in_bytes')), memoryMiB * 2 ** 20);
  assert.equal((await readFile(join(processes, 'pids.max'), 'utf8')).trim(), String(pids));
  const used = await readNumber(join(memory, 'memory.usage_in_bytes'));
  const running = await readNumber(join(processes, 'pids.current'));
  assert.ok(used < memoryMiB * 2 ** 20 * 0.75, `the idle desktop uses ${Math.round(used / 2 ** 20)} MiB of ${memoryMiB}`);
  assert.ok(running < pids * 0.75, `the idle desktop runs ${running} processes and threads of ${pids}`);
  const home = await nodeInSandbox<{ bytes: number }>(
    watched.target,
    `const s = require('node:fs').statfsSync('/home/porthole'); console.log(JSON.stringify({ bytes: s.blocks * s.bsize }));`,
  );
  assert.equal(home.bytes, homeMiB * 2 ** 20, 'the home is a tmpfs of PORTHOLE_SANDBOX_HOME_MIB');
});

test('a memory hog: its session fails with SANDBOX_LIMIT_REACHED naming memory and the limit, the sandbox goes whole, the watched session goes on', async (tc) => {
  const session = await t.readySession();
  const target = await localSandboxTarget(t.dataDir, session.sandboxId!);
  // Allocates and touches 16 MiB at a time; gives up (and says so) at four times the limit.
  const hogScript = `
    const chunks = [];
    let mib = 0;
    process.stdin.once('data', () => {
      const grow = () => {
        const chunk = Buffer.allocUnsafe(16 * 1024 * 1024);
        chunk.fill(mib % 251);
        chunks.push(chunk);
        mib += 16;
        if (mib % 64 === 0) console.log('allocated ' + mib + ' MiB');
        if (mib >= ${memoryMiB * 4}) { console.log('survived ' + mib + ' MiB'); process.exit(3); }
        setImmediate(grow);
      };
      grow();
    });
    console.log('ready');`;
  const startedAt = Date.now();
  const hog = await startInCgroups(target, ['/usr/bin/node', '-e', hogScript]);
  try {
    const failed = await t.waitForState(session.id, ['failed', 'ended'], 60_000);
    const failedMs = Date.now() - startedAt;
    assert.equal(failed.state, 'failed', `${failed.state} ${failed.reason}: ${failed.detail}`);
    assert.equal(failed.reason, 'SANDBOX_LIMIT_REACHED');
    assert.match(failed.detail ?? '', new RegExp(`ran out of memory \\(${memoryMiB} MiB\\)`));
    const ended = await within(hog.finished, 15_000, 'the memory hog ends');
    assert.doesNotMatch(ended.stdout, /survived/, 'the hog never got past the limit');
    assert.equal(ended.signal ?? ended.code, 'SIGKILL', `the hog was killed: ${JSON.stringify({ code: ended.code, signal: ended.signal })}`);
    const mostMiB = Math.max(0, ...[...ended.stdout.matchAll(/allocated (\d+) MiB/g)].map((m) => Number(m[1])));
    assert.ok(mostMiB < memoryMiB, `the hog allocated at most ${mostMiB} MiB`);
    const { events } = await t.api.listEvents(session.id);
    const failure = events.find((e) => e.type === 'session.failed');
    assert.equal(failure?.reason, 'SANDBOX_LIMIT_REACHED');
    tc.diagnostic(`memory hog: session failed ${failedMs} ms after it started, having allocated ${mostMiB} MiB; ${failed.detail}`);

    await assertWatchedUnaffected();
    await assertNothingLeftOf(target);
  } finally {
    await hog.kill();
  }
});

test('a fork loop: its session fails with SANDBOX_LIMIT_REACHED naming the process limit, the sandbox goes whole, the watched session goes on', async (tc) => {
  const session = await t.readySession();
  const target = await localSandboxTarget(t.dataDir, session.sandboxId!);
  const before = await readNumber(join(cgroupDir(watched.target, 'pids'), 'pids.current'));
  // Bounded: twice the limit of sleeps, then it says how many it started.
  const startedAt = Date.now();
  const forker = await startInCgroups(target, [
    '/usr/bin/sh',
    '-c',
    `echo ready; read go; i=0; while [ $i -lt ${pids * 2} ]; do sleep 600 & i=$((i+1)); done; echo "started $i"; wait`,
  ]);
  try {
    const failed = await t.waitForState(session.id, ['failed', 'ended'], 60_000);
    const failedMs = Date.now() - startedAt;
    assert.equal(failed.state, 'failed', `${failed.state} ${failed.reason}: ${failed.detail}`);
    assert.equal(failed.reason, 'SANDBOX_LIMIT_REACHED');
    assert.match(failed.detail ?? '', new RegExp(`limit of ${pids} processes`));
    const ended = await within(forker.finished, 15_000, 'the fork loop ends');
    assert.doesNotMatch(ended.stdout, new RegExp(`started ${pids * 2}`), 'the loop never started all its processes');
    tc.diagnostic(
      `fork loop: session failed ${failedMs} ms after it started; ${failed.detail}; the shell said ${JSON.stringify((ended.stdout + ended.stderr).trim().split('\n').slice(-2))}`,
    );

    await assertWatchedUnaffected();
    const after = await readNumber(join(cgroupDir(watched.target, 'pids'), 'pids.current'));
    assert.ok(Math.abs(after - before) < 30, `the watched sandbox's process count is its own: ${before} before, ${after} after`);
    await assertNothingLeftOf(target);
  } finally {
    await forker.kill();
  }
});
