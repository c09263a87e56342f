import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { access, chmod, constants, copyFile, mkdtemp, readFile, readlink, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { conformanceSpec, driverConformance, waitUntilHealthy, type ConformanceFixture } from '../../src/drivers/conformance.js';
import { fetchAgentHealth, readRfbBanner } from '../../src/drivers/endpoint-probes.js';
import { sandboxPasswd } from '../../src/drivers/local/bwrap-command.js';
import { sandboxesDir } from '../../src/drivers/local-layout.js';
import { createLocalDriver, sandboxLeftovers, sandboxProcesses } from '../../src/drivers/local/local-driver.js';
import { readProcStat, socketInodesOf } from '../../src/drivers/proc-scan.js';
import { readRecord, type SandboxRecord } from '../../src/drivers/local/sandbox-record.js';
import type { SandboxId } from '../../src/protocol/ids.js';
import { driverTestUids } from '../support/sandbox-uids.js';
import { until, untilDefined } from '../support/until.js';

// The local driver against the conformance suite, then what only the local driver promises: the
// isolation of its sandboxes as seen from the host, supervision, and adoption after a restart.

const dist = fileURLToPath(new URL('../../', import.meta.url));
const builtAgent = join(dist, 'agent/porthole-agent.mjs');
const isRoot = process.getuid?.() === 0;
/** The driver's tests take their uids from the end of the test range (test servers take theirs from its start). */
const sandboxUids = driverTestUids(0);

async function assertPrerequisites(): Promise<void> {
  const path = (process.env.PATH ?? '').split(delimiter);
  const missing: string[] = [];
  for (const [command, pkg] of [
    ['bwrap', 'bubblewrap'],
    ['Xvnc', 'tigervnc-standalone-server'],
    ['openbox', 'openbox'],
    ['xterm', 'xterm'],
    ['chromium', 'chromium'],
  ]) {
    const found = await Promise.any(path.map((dir) => access(join(dir, command!), constants.X_OK))).then(
      () => true,
      () => false,
    );
    if (!found) missing.push(`${command} (apt-get install ${pkg})`);
  }
  if (
    !(await access(builtAgent).then(
      () => true,
      () => false,
    ))
  )
    missing.push(`${builtAgent} (node scripts/build.mjs)`);
  if (
    !(await access('/usr/bin/node').then(
      () => true,
      () => false,
    ))
  )
    missing.push('/usr/bin/node (the agent runs on it inside the sandbox)');
  assert.deepEqual(missing, [], `missing prerequisites: ${missing.join(', ')}`);
}

interface LocalFixture extends ConformanceFixture {
  readonly dataDir: string;
}

async function localFixture(): Promise<LocalFixture> {
  await assertPrerequisites();
  const dataDir = await mkdtemp(join(tmpdir(), 'porthole-test-'));
  // A copy, so that a concurrent rebuild of dist/ cannot swap the agent under a running test.
  const agentBundle = join(dataDir, 'porthole-agent.mjs');
  await copyFile(builtAgent, agentBundle);
  await chmod(agentBundle, 0o644);
  const driver = createLocalDriver({ dataDir, sandboxUids, agentBundle });
  return {
    driver,
    dataDir,
    leftovers: (id) => sandboxLeftovers(dataDir, id),
    kill: async (id) => {
      const record = await recordOf(dataDir, id);
      for (const pid of await sandboxProcesses(id, record.init.pidNamespace)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Gone with the namespace's init, killed a moment before.
        }
      }
    },
    cleanup: () => rm(dataDir, { recursive: true, force: true }),
  };
}

async function recordOf(dataDir: string, id: SandboxId): Promise<SandboxRecord> {
  const record = await readRecord(join(sandboxesDir(dataDir), id));
  assert.ok(record, `sandbox.json of ${id}`);
  return record;
}

/** A process's arguments. Chromium rewrites its title into one space-separated string: split on both. */
async function cmdline(pid: number): Promise<string[]> {
  const raw = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return raw.split(/[\0 ]/).filter(Boolean);
}

async function statusField(pid: number, field: string): Promise<string | null> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return text.match(new RegExp(`^${field}:\\s*(.*)$`, 'm'))?.[1] ?? null;
}

/** Socket inodes listening on TCP (state 0A) in the host's network namespace, which the sandbox shares. */
async function tcpListenInodes(): Promise<Set<number>> {
  const inodes = new Set<number>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const lines = (await readFile(file, 'utf8').catch(() => '')).split('\n').slice(1);
    for (const line of lines) {
      const cols = line.trim().split(/\s+/);
      if (cols[3] === '0A') inodes.add(Number(cols[9]));
    }
  }
  return inodes;
}

/** Abstract unix sockets (@…) as listed in /proc/net/unix: inode → path. */
async function abstractUnixSockets(): Promise<Map<number, string>> {
  const sockets = new Map<number, string>();
  for (const line of (await readFile('/proc/net/unix', 'utf8')).split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols[7]?.startsWith('@')) sockets.set(Number(cols[6]), cols[7]);
  }
  return sockets;
}

driverConformance('local', localFixture);

describe('local driver', { timeout: 300_000 }, () => {
  let fixture: LocalFixture | undefined;
  let pageServer: Server | undefined;
  const pageHits: string[] = [];
  const created = new Set<SandboxId>();

  before(async () => {
    fixture = await localFixture();
    pageServer = createServer((request, response) => {
      pageHits.push(request.url ?? '');
      response.writeHead(200, { 'content-type': 'text/html' });
      response.end('<!doctype html><title>porthole local test</title><h1>porthole local test</h1>');
    });
    await new Promise<void>((resolve) => pageServer!.listen(0, '127.0.0.1', resolve));
  });

  after(async () => {
    const problems: string[] = [];
    if (fixture) {
      for (const id of created) {
        await fixture.driver.destroy(id).catch((error: unknown) => problems.push(`${id}: destroy failed: ${String(error)}`));
        const left = await fixture.leftovers(id);
        if (left.length > 0) problems.push(`${id}: left ${left.join('; ')}`);
      }
      await fixture.driver.close();
      await fixture.cleanup();
    }
    pageServer?.closeAllConnections();
    await new Promise((resolve) => pageServer?.close(resolve) ?? resolve(undefined));
    assert.deepEqual(problems, []);
  });

  it('isolates a sandbox: its own uid and network namespace, Chromium sandboxed, no TCP listener on the host, no abstract X socket, own /etc/passwd', async () => {
    const { driver, dataDir } = fixture!;
    const port = (pageServer!.address() as AddressInfo).port;
    const spec = conformanceSpec({ startUrl: `http://127.0.0.1:${port}/start` });
    created.add(spec.id);
    const handle = await driver.create(spec);
    await waitUntilHealthy(handle.agent);
    const record = await recordOf(dataDir, spec.id);
    const renderer = await untilDefined(
      'a Chromium renderer',
      async () => {
        for (const pid of await sandboxProcesses(spec.id, record.init.pidNamespace)) if ((await cmdline(pid)).includes('--type=renderer')) return pid;
        return undefined;
      },
      20_000,
      { intervalMs: 100 },
    );
    // Its own network namespace: the host's loopback (where the start page is served) is not
    // there, and with no egress proxy serving this sandbox (no server here) nothing goes out.
    assert.notEqual(await readlink(`/proc/${record.agent!.pid}/ns/net`), await readlink('/proc/self/ns/net'), 'network namespace of its own');
    assert.deepEqual(pageHits, [], 'the sandbox reached a page on the host’s loopback');
    const pids = await sandboxProcesses(spec.id, record.init.pidNamespace);
    const commands = await Promise.all(pids.map(cmdline));
    assert.ok(
      commands.some((argv) => argv[0]?.endsWith('Xvnc')),
      'Xvnc runs in the sandbox',
    );

    // Every process of the sandbox runs as the sandbox's own unprivileged uid on the host (real, effective, saved, fs).
    const sandboxUid = isRoot ? record.uid : process.getuid!();
    if (isRoot) assert.ok(record.uid >= sandboxUids.first && record.uid <= sandboxUids.last, `uid ${record.uid} from the range`);
    for (const pid of pids) {
      const uids = await statusField(pid, 'Uid');
      if (uids === null) continue; // exited meanwhile
      assert.deepEqual(
        uids.split(/\s+/).map(Number),
        [sandboxUid, sandboxUid, sandboxUid, sandboxUid],
        `uids of ${pid} ${commands[pids.indexOf(pid)]?.join(' ')}`,
      );
    }

    // Chromium runs with its own sandbox: no --no-sandbox anywhere, a zygote, and renderers under
    // seccomp-bpf in a user namespace of their own.
    assert.ok(!commands.some((argv) => argv.includes('--no-sandbox')), 'a process of the sandbox has --no-sandbox');
    assert.ok(
      commands.some((argv) => argv.includes('--type=zygote')),
      'Chromium has a zygote',
    );
    const browser = pids[commands.findIndex((argv) => argv[0]?.endsWith('/chromium') && !argv.some((a) => a.startsWith('--type=')))];
    assert.ok(browser, 'Chromium browser process');
    assert.equal(await statusField(renderer, 'Seccomp'), '2', 'renderer under seccomp-bpf');
    assert.notEqual(await readlink(`/proc/${renderer}/ns/user`), await readlink(`/proc/${browser}/ns/user`), 'renderer in its own user namespace');

    // Nothing of the sandbox listens on TCP.
    const listening = await tcpListenInodes();
    const sandboxSockets = await socketInodesOf(pids);
    assert.deepEqual(
      [...sandboxSockets].filter((inode) => listening.has(inode)),
      [],
      'TCP listeners owned by the sandbox',
    );

    // The display is not reachable from the host: no abstract @/tmp/.X11-unix socket (abstract
    // sockets live in the network namespace; Xvnc runs with -nolisten local all the same).
    const abstract = await abstractUnixSockets();
    const xAbstract = [...sandboxSockets].map((inode) => abstract.get(inode)).filter((path) => path?.includes('.X11-unix'));
    assert.deepEqual(xAbstract, [], 'abstract X11 sockets of the sandbox');

    // Its /etc is a minimal one with a synthesized passwd, seen through the agent's root.
    const agent = pids.find((pid) => commands[pids.indexOf(pid)]?.join(' ') === '/usr/bin/node /opt/porthole/agent.mjs');
    assert.ok(agent, 'agent process');
    assert.equal(await readFile(`/proc/${agent}/root/etc/passwd`, 'utf8'), sandboxPasswd);
    await assert.rejects(access(`/proc/${agent}/root/etc/shadow`), { code: 'ENOENT' });
    await assert.rejects(access(`/proc/${agent}/root/etc/ssh`), { code: 'ENOENT' });

    assert.match(await readRfbBanner(handle.vnc), /^RFB /);
    await driver.destroy(spec.id);
    assert.deepEqual(await fixture!.leftovers(spec.id), []);
  });

  it('restarts desktop processes that die (xterm, then Xvnc) and counts it', async () => {
    const { driver, dataDir } = fixture!;
    const spec = conformanceSpec();
    created.add(spec.id);
    const handle = await driver.create(spec);
    await waitUntilHealthy(handle.agent);
    const record = await recordOf(dataDir, spec.id);
    for (const pid of await sandboxProcesses(spec.id, record.init.pidNamespace)) {
      if ((await readProcStat(pid))?.comm === 'xterm') process.kill(pid, 'SIGKILL');
    }
    const health = await untilDefined(
      'the terminal to be restarted',
      async () => {
        const h = await fetchAgentHealth(handle.agent);
        const terminal = h.processes.find((p) => p.name === 'terminal');
        return h.healthy && terminal?.restarts === 1 ? h : undefined;
      },
      20_000,
      { intervalMs: 100 },
    );
    assert.equal(health.processes.find((p) => p.name === 'terminal')?.lastExit, 'signal SIGKILL');

    // A killed Xvnc leaves its lock and sockets; the agent clears them, restarts it, and the
    // clients that lost their display come back too.
    for (const pid of await sandboxProcesses(spec.id, record.init.pidNamespace)) {
      if ((await readProcStat(pid))?.comm === 'Xvnc') process.kill(pid, 'SIGKILL');
    }
    await until(
      'Xvnc to be restarted and the desktop healthy again',
      async () => {
        const h = await fetchAgentHealth(handle.agent);
        return h.healthy && h.processes.find((p) => p.name === 'vnc')?.restarts === 1;
      },
      (isBack) => isBack,
      20_000,
      { intervalMs: 100 },
    );
    assert.match(await readRfbBanner(handle.vnc), /^RFB /);
    await driver.destroy(spec.id);
  });

  it('says how a killed sandbox ended', async () => {
    const { driver } = fixture!;
    const spec = conformanceSpec();
    created.add(spec.id);
    const handle = await driver.create(spec);
    await waitUntilHealthy(handle.agent);
    // Only the namespace's init: the kernel kills the rest, and bwrap reports how its init ended.
    process.kill((await recordOf(fixture!.dataDir, spec.id)).init.pid, 'SIGKILL');
    const info = await untilDefined(
      'the sandbox to exit',
      async () => {
        const i = await driver.inspect(spec.id);
        return i?.status === 'exited' && i.exit !== null ? i : undefined;
      },
      20_000,
      { intervalMs: 100 },
    );
    assert.equal(info.exit, 'signal SIGKILL');
    await driver.destroy(spec.id);
  });

  it('adopts and destroys a sandbox that an earlier server process started', async () => {
    const { driver, dataDir } = fixture!;
    const spec = conformanceSpec();
    created.add(spec.id);
    // Another node process creates the sandbox and exits, as a server that restarts would.
    const script = `
      import { createLocalDriver } from ${JSON.stringify(join(dist, 'src/drivers/local/local-driver.js'))};
      const driver = createLocalDriver(${JSON.stringify({ dataDir, sandboxUids, agentBundle: join(dataDir, 'porthole-agent.mjs') })});
      await driver.create(${JSON.stringify(spec)});
      await driver.close();`;
    await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { timeout: 30_000 });

    const info = await driver.inspect(spec.id);
    assert.equal(info?.status, 'running');
    assert.deepEqual((await driver.list()).find((s) => s.id === spec.id)?.status, 'running');
    const health = await waitUntilHealthy(info.agent);
    assert.equal(health.healthy, true);
    await driver.destroy(spec.id);
    assert.deepEqual(await fixture!.leftovers(spec.id), []);
    assert.equal(await driver.inspect(spec.id), null);
  });
});
