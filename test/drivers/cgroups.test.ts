import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { parseCgroupMounts, parseProcCgroup, ownCgroupDir, readOwnCgroups } from '../../src/drivers/cgroups/cgroup-mounts.js';
import { v2Host } from '../../src/drivers/cgroups/cgroup-v2.js';
import { describeLimitsHit, detectCgroups, type CgroupHost } from '../../src/drivers/cgroups/cgroups.js';
import { newSandboxId, type SandboxId } from '../../src/protocol/ids.js';
import { runAsUser, stagedPath } from '../support/as-user.js';
import { until } from '../support/until.js';

// Per-sandbox cgroups for real, on this machine's cgroup v1 (as CI's): processes running as an
// unprivileged uid are OOM-killed at the memory limit and refused forks at the pids limit, while a
// process of the same uid outside is not. What the code did is checked in the kernel's own files
// (paths worked out here from /proc/self/cgroup, not taken from the code under test). The v2 path
// cannot run here; its directory mechanics run on the hybrid host's controller-less unified mount.

const testUid = 61999;
const MiB = 2 ** 20;

/** Where the kernel shows this test process's cgroup in a v1 hierarchy mounted at /sys/fs/cgroup/<controller>. */
async function ownV1Dir(controller: string): Promise<string> {
  const line = (await readFile('/proc/self/cgroup', 'utf8')).split('\n').find((l) => l.split(':')[1]?.split(',').includes(controller));
  assert.ok(line, `no ${controller} hierarchy in /proc/self/cgroup`);
  return join('/sys/fs/cgroup', controller, line.split(':').slice(2).join(':'));
}

const leafOf = async (controller: string, id: SandboxId) => join(await ownV1Dir(controller), 'porthole-sandboxes', id);
const readTrimmed = async (path: string) => (await readFile(path, 'utf8')).trim();
const procsOf = async (dir: string) => (await readTrimmed(join(dir, 'cgroup.procs'))).split('\n').filter(Boolean).map(Number);
const isGone = (path: string) =>
  stat(path).then(
    () => false,
    (error: NodeJS.ErrnoException) => error.code === 'ENOENT',
  );

async function assertPrerequisites(): Promise<void> {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('root (cgroups are created by the server as root)');
  const mounts = parseCgroupMounts(await readFile('/proc/self/mountinfo', 'utf8'));
  for (const controller of ['memory', 'pids']) {
    if (!mounts.some((m) => m.fsType === 'cgroup' && m.mountPoint === `/sys/fs/cgroup/${controller}`))
      missing.push(`cgroup v1 ${controller} hierarchy at /sys/fs/cgroup/${controller}`);
  }
  if (!mounts.some((m) => m.fsType === 'cgroup2')) missing.push('a cgroup2 mount (the hybrid host’s unified hierarchy)');
  assert.deepEqual(missing, [], `missing prerequisites: ${missing.join(', ')}`);
}

/** `sh -c script` as the test uid, in its own process group (so the test can kill all it forked). */
function spawnAsTestUid(script: string, name: string): ChildProcess {
  return spawn('/bin/sh', ['-c', script, `porthole-test-${name}`], {
    uid: testUid,
    gid: testUid,
    cwd: '/',
    env: { PATH: '/usr/bin:/bin' },
    detached: true,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

function exited(child: ChildProcess, timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`process ${child.pid} still runs after ${timeoutMs} ms`)), timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
}

/** Kills a process group the test started; it may be gone already. */
function killGroup(child: ChildProcess | undefined): void {
  if (child?.pid === undefined) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

let host: CgroupHost;
before(async () => {
  await assertPrerequisites();
  host = await detectCgroups();
});

describe('detectCgroups on this host', () => {
  test('reports cgroup v1 with memory and pids enforceable, and says where', () => {
    assert.equal(host.version, 'v1', host.why);
    assert.equal(host.enforceable.memory, true, host.why);
    assert.equal(host.enforceable.pids, true, host.why);
    assert.match(
      host.why,
      /^cgroup v1: memory \(swap included\) in \/sys\/fs\/cgroup\/memory\/.*porthole-sandboxes, pids in \/sys\/fs\/cgroup\/pids\/.*porthole-sandboxes/,
    );
  });

  test('leaves no probe directory behind', async () => {
    for (const controller of ['memory', 'pids', 'cpu']) {
      const parent = join(await ownV1Dir(controller), 'porthole-sandboxes');
      // Another run's sandboxes may be there; then the directory must hold only them.
      if (!(await isGone(parent))) assert.ok((await host.list()).length > 0, `${parent} left behind`);
    }
  });

  test('as an unprivileged user: none, with the reason, and a cgroup that holds nothing', async () => {
    const module = new URL('../../src/drivers/cgroups/cgroups.js', import.meta.url).href;
    const script = `
      const { detectCgroups } = await import(${JSON.stringify(stagedPath(module))});
      const host = await detectCgroups();
      const cgroup = await host.create('${newSandboxId()}', { memoryBytes: ${64 * MiB}, pids: 20, cpuWeight: 100 });
      await cgroup.add(process.pid);
      console.log(JSON.stringify({ version: host.version, enforceable: host.enforceable, why: host.why, hit: await cgroup.limitsHit(), usage: await cgroup.usage(), list: await host.list() }));`;
    const { stdout } = await runAsUser(testUid, process.execPath, ['--input-type=module', '-e', script, 'porthole-test-nonroot']);
    const seen = JSON.parse(stdout) as Record<string, unknown>;
    assert.deepEqual(seen, {
      version: 'none',
      enforceable: { memory: false, pids: false, cpu: false },
      why: `porthole runs as uid ${testUid}, not root: it cannot create cgroups, so sandboxes run without memory, process or cpu limits`,
      hit: { memory: false, pids: false },
      usage: { memoryBytes: null, pids: null },
      list: [],
    });
  });

  test('refuses anything but a sandbox id, and limits out of range, before touching the filesystem', async () => {
    const limits = { memoryBytes: 64 * MiB, pids: 20, cpuWeight: 100 };
    for (const id of ['../../porthole-test-escape', 'sbx_../../x', '', 'ses_00000000000000000000']) {
      await assert.rejects(host.create(id, limits), /not a sandbox id/);
      await assert.rejects(host.open(id), /not a sandbox id/);
    }
    assert.equal(await isGone(join(await ownV1Dir('memory'), 'porthole-sandboxes', '../../porthole-test-escape')), true);
    await assert.rejects(host.create(newSandboxId(), { ...limits, cpuWeight: 0 }), /cpuWeight 0/);
    await assert.rejects(host.create(newSandboxId(), { ...limits, pids: 1.5 }), /pids 1.5/);
  });
});

describe('a sandbox cgroup on cgroup v1', () => {
  test('memory: a process of the test uid that allocates past 64 MiB is OOM-killed, and limitsHit says so', async () => {
    const id = newSandboxId();
    const cgroup = await host.create(id, { memoryBytes: 64 * MiB, pids: 64, cpuWeight: 50 });
    let child: ChildProcess | undefined;
    try {
      const memoryDir = await leafOf('memory', id);
      assert.equal(await readTrimmed(join(memoryDir, 'memory.limit_in_bytes')), String(64 * MiB));
      assert.equal(await readTrimmed(join(memoryDir, 'memory.memsw.limit_in_bytes')), String(64 * MiB), 'swap must not stretch the limit');
      assert.match(await readTrimmed(join(memoryDir, 'memory.oom_control')), /^oom_kill_disable 0$/m);
      assert.equal(await readTrimmed(join(await leafOf('pids', id), 'pids.max')), '64');
      assert.equal(await readTrimmed(join(await leafOf('cpu', id), 'cpu.shares')), '512');
      assert.deepEqual(cgroup.limits, { memoryBytes: 64 * MiB, pids: 64, cpuWeight: 50 });

      // Waits on stdin so it is inside the cgroup before it allocates; Buffer.alloc(n, 1) touches every page.
      const allocate = 'process.stdin.once("data", () => { const kept = []; for (;;) kept.push(Buffer.alloc(1 << 20, 1)); })';
      child = spawn('/usr/bin/node', ['-e', allocate, 'porthole-test-oom'], {
        uid: testUid,
        gid: testUid,
        cwd: '/',
        env: {},
        detached: true,
        stdio: ['pipe', 'ignore', 'pipe'],
      });
      await new Promise((resolve, reject) => child!.once('spawn', resolve).once('error', reject));
      await cgroup.add(child.pid!);
      assert.deepEqual(await procsOf(memoryDir), [child.pid]);
      assert.match(await readFile(`/proc/${child.pid}/cgroup`, 'utf8'), new RegExp(`^\\d+:pids:/.*porthole-sandboxes/${id}$`, 'm'));
      assert.deepEqual(await cgroup.limitsHit(), { memory: false, pids: false });

      child.stdin!.write('go\n');
      const exit = await exited(child, 60_000);
      assert.deepEqual(exit, { code: null, signal: 'SIGKILL' }, 'the kernel’s OOM killer ends it');
      assert.deepEqual(await cgroup.limitsHit(), { memory: true, pids: false });
      assert.match(await readTrimmed(join(memoryDir, 'memory.oom_control')), /^oom_kill [1-9]\d*$/m);
      assert.ok(Number(await readTrimmed(join(memoryDir, 'memory.max_usage_in_bytes'))) <= 64 * MiB);
      assert.equal(describeLimitsHit(await cgroup.limitsHit(), cgroup.limits), 'the desktop ran out of memory (64 MiB)');

      await cgroup.remove();
      for (const controller of ['memory', 'pids', 'cpu']) assert.equal(await isGone(await leafOf(controller, id)), true, `${controller} cgroup left behind`);
      assert.equal(await cgroup.limitsHit().then((hit) => hit.memory), false, 'a removed cgroup hit nothing');
    } finally {
      killGroup(child);
      await cgroup.remove();
    }
  });

  test('pids: a fork loop stops at 20 tasks while the same uid forks freely outside; open, list, remove', async () => {
    const id = newSandboxId();
    const cgroup = await host.create(id, { memoryBytes: 256 * MiB, pids: 20, cpuWeight: 100 });
    let loop: ChildProcess | undefined;
    let outside: ChildProcess | undefined;
    try {
      // dash gives up at the first fork refused, leaving its sleeps to fill the cgroup.
      loop = spawnAsTestUid('read go; while :; do sleep 60 & done', 'forkloop');
      loop.stderr!.resume();
      await new Promise((resolve, reject) => loop!.once('spawn', resolve).once('error', reject));
      await cgroup.add(loop.pid!);
      loop.stdin!.write('go\n');

      await until(
        'the fork loop reaches pids.max',
        () => cgroup.limitsHit(),
        (hit) => hit.pids,
        20_000,
        { intervalMs: 50 },
      );
      const pidsDir = await leafOf('pids', id);
      assert.equal(await readTrimmed(join(pidsDir, 'pids.peak')), '20');
      assert.match(await readTrimmed(join(pidsDir, 'pids.events')), /^max [1-9]\d*$/);
      const usage = await cgroup.usage();
      assert.ok(usage.pids !== null && usage.pids >= 19 && usage.pids <= 20, `pids ${usage.pids}`);
      assert.ok(usage.memoryBytes !== null && usage.memoryBytes > 0);
      assert.equal((await cgroup.limitsHit()).memory, false);
      assert.equal(describeLimitsHit(await cgroup.limitsHit(), cgroup.limits), 'the desktop reached its limit of 20 processes and threads');

      // The same uid outside the cgroup, while the cgroup is full.
      outside = spawnAsTestUid('i=0; while [ $i -lt 25 ]; do sleep 60 & i=$((i+1)); done; echo $i', 'outside');
      outside.stdin!.end();
      let out = '';
      let err = '';
      outside.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      outside.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      const outsideExit = await exited(outside, 20_000);
      assert.deepEqual({ ...outsideExit, out: out.trim(), err }, { code: 0, signal: null, out: '25', err: '' });

      // A later server finds it again by the sandbox id, with its limits read back from the kernel.
      const reopened = await host.open(id);
      assert.ok(reopened);
      assert.deepEqual(reopened.limits, { memoryBytes: 256 * MiB, pids: 20, cpuWeight: 100 });
      assert.equal((await reopened.limitsHit()).pids, true);
      assert.ok((await host.list()).includes(id));

      // It kills nothing: with processes inside, remove refuses and names them.
      await assert.rejects(reopened.remove(), /processes [\d, ]+ are still in it/);
      assert.equal(await isGone(await leafOf('pids', id)), false);

      killGroup(loop);
      await until(
        'the cgroup empties',
        async () => (await procsOf(await leafOf('pids', id))).length,
        (n) => n === 0,
        10_000,
        { intervalMs: 50 },
      );
      await reopened.remove();
      for (const controller of ['memory', 'pids', 'cpu']) assert.equal(await isGone(await leafOf(controller, id)), true, `${controller} cgroup left behind`);
      await reopened.remove();
      await cgroup.remove();
      assert.equal(await host.open(id), null);
      assert.ok(!(await host.list()).includes(id));
    } finally {
      killGroup(loop);
      killGroup(outside);
      if (loop) await exited(loop, 10_000).catch(() => {});
      await until(
        'the cgroup empties',
        async () => ((await isGone(await leafOf('pids', id))) ? 0 : (await procsOf(await leafOf('pids', id))).length),
        (n) => n === 0,
        10_000,
      ).catch(() => {});
      await cgroup.remove();
    }
  });

  test('create reuses a leftover of the same id, rewriting its limits', async () => {
    const id = newSandboxId();
    const first = await host.create(id, { memoryBytes: 64 * MiB, pids: 20, cpuWeight: 100 });
    try {
      const second = await host.create(id, { memoryBytes: 128 * MiB, pids: 40, cpuWeight: 200 });
      assert.equal(await readTrimmed(join(await leafOf('memory', id), 'memory.limit_in_bytes')), String(128 * MiB));
      assert.equal(await readTrimmed(join(await leafOf('memory', id), 'memory.memsw.limit_in_bytes')), String(128 * MiB));
      assert.deepEqual((await host.open(id))?.limits, { memoryBytes: 128 * MiB, pids: 40, cpuWeight: 200 });
      await second.remove();
    } finally {
      await first.remove();
    }
  });
});

describe('cgroup v2 mechanics on the unified hierarchy (no controllers on this hybrid host)', () => {
  test('create, add, list, open, refuse to remove while populated, remove', async () => {
    const own = await readOwnCgroups();
    const membership = own.memberships.find((m) => m.hierarchyId === 0);
    const mount = own.mounts.find((m) => m.fsType === 'cgroup2');
    assert.ok(membership && mount, 'no unified hierarchy');
    const v2 = await v2Host({ mountPoint: mount.mountPoint, path: membership.path });
    assert.equal(v2.version, 'v2');
    assert.deepEqual(v2.enforceable, { memory: false, pids: false, cpu: false });
    assert.match(v2.why, /^cgroup v2: nothing enforceable; not enforced: memory \(not delegated to .*\), pids/);

    const id = newSandboxId();
    const cgroup = await v2.create(id, { memoryBytes: 64 * MiB, pids: 20, cpuWeight: 100 });
    const leaf = join(ownCgroupDir(mount, membership.path)!, 'porthole-sandboxes', id);
    let child: ChildProcess | undefined;
    try {
      assert.equal(await isGone(leaf), false);
      child = spawnAsTestUid('read x', 'v2');
      await new Promise((resolve, reject) => child!.once('spawn', resolve).once('error', reject));
      await cgroup.add(child.pid!);
      assert.match(await readFile(`/proc/${child.pid}/cgroup`, 'utf8'), new RegExp(`^0::/(.*/)?porthole-sandboxes/${id}$`, 'm'));
      assert.deepEqual(await procsOf(leaf), [child.pid]);
      assert.ok((await v2.list()).includes(id));
      const reopened = await v2.open(id);
      assert.deepEqual(reopened?.limits, { memoryBytes: Infinity, pids: Infinity, cpuWeight: 100 });
      assert.deepEqual(await cgroup.limitsHit(), { memory: false, pids: false });
      assert.deepEqual(await cgroup.usage(), { memoryBytes: null, pids: null });
      await assert.rejects(cgroup.remove(), /still in it/);

      child.stdin!.end();
      await exited(child, 10_000);
      await cgroup.remove();
      assert.equal(await isGone(leaf), true);
      await cgroup.remove();
      assert.equal(await v2.open(id), null);
    } finally {
      killGroup(child);
      if (child) await exited(child, 10_000).catch(() => {});
      await cgroup.remove();
    }
  });
});

describe('parsing /proc/self/cgroup and mountinfo', () => {
  test('controllers, named hierarchies, colons in paths, escaped mount points, bind-mounted roots', () => {
    assert.deepEqual(parseProcCgroup('12:cpu,cpuacct:/a\n1:name=systemd:/b\n0::/c:d\n'), [
      { hierarchyId: 12, controllers: ['cpu', 'cpuacct'], path: '/a' },
      { hierarchyId: 1, controllers: [], path: '/b' },
      { hierarchyId: 0, controllers: [], path: '/c:d' },
    ]);
    const mounts = parseCgroupMounts(
      [
        '32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct',
        '40 31 0:30 /docker/abc /sys/fs/cgroup/my\\040memory rw - cgroup cgroup rw,memory',
        '41 31 0:31 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate',
        '50 23 0:5 / /proc rw - proc proc rw',
      ].join('\n'),
    );
    assert.deepEqual(
      mounts.map((m) => [m.fsType, m.mountPoint, m.root]),
      [
        ['cgroup', '/sys/fs/cgroup/cpu,cpuacct', '/'],
        ['cgroup', '/sys/fs/cgroup/my memory', '/docker/abc'],
        ['cgroup2', '/sys/fs/cgroup/unified', '/'],
      ],
    );
    assert.equal(ownCgroupDir(mounts[1]!, '/docker/abc/x'), '/sys/fs/cgroup/my memory/x');
    assert.equal(ownCgroupDir(mounts[1]!, '/docker/abc'), '/sys/fs/cgroup/my memory');
    assert.equal(ownCgroupDir(mounts[1]!, '/docker/abcd'), null, 'another container’s cgroup');
    assert.equal(ownCgroupDir(mounts[0]!, '/'), '/sys/fs/cgroup/cpu,cpuacct');
  });

  test('the sentences a session fails with', () => {
    const limits = { memoryBytes: 2 ** 30, pids: 512, cpuWeight: 100 };
    assert.equal(describeLimitsHit({ memory: false, pids: false }, limits), null);
    assert.equal(describeLimitsHit({ memory: true, pids: false }, limits), 'the desktop ran out of memory (1 GiB)');
    assert.equal(
      describeLimitsHit({ memory: true, pids: true }, { ...limits, memoryBytes: 1.5 * 2 ** 30 }),
      'the desktop ran out of memory (1.5 GiB), and the desktop reached its limit of 512 processes and threads',
    );
  });
});
