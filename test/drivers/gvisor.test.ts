import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { access, chmod, constants, copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { conformanceSpec, driverConformance, waitUntilHealthy, type ConformanceFixture } from '../../src/drivers/conformance.js';
import type { Driver } from '../../src/drivers/driver.js';
import { createGvisorDriver, gvisorLeftovers } from '../../src/drivers/gvisor/gvisor-driver.js';
import { runscProcesses } from '../../src/drivers/gvisor/runsc.js';
import { sandboxDir } from '../../src/drivers/local-layout.js';
import type { SandboxId } from '../../src/protocol/ids.js';

// The gvisor driver against the conformance suite every driver passes, then what only gVisor
// promises: the sandbox's kernel is gVisor's, and host kernel interfaces the local driver's
// sandboxes reach (perf_event_open, io_uring, bpf) are not there.

const run = promisify(execFile);
const dist = fileURLToPath(new URL('../../', import.meta.url));
const builtAgent = join(dist, 'agent/porthole-agent.mjs');
/** The driver's tests take uids at the end of the test range, apart from the local driver's (61190–61199). */
const sandboxUids = { first: 61180, last: 61189 };

interface GvisorFixture extends ConformanceFixture {
  readonly dataDir: string;
}

async function gvisorFixture(): Promise<GvisorFixture> {
  const runscFound = await access('/usr/bin/runsc', constants.X_OK).then(
    () => true,
    () => false,
  );
  assert.ok(runscFound, 'runsc is missing (apt-get install runsc; npm test installs it through scripts/setup.sh --test)');
  // As the server runs (src/server/data-dir.ts): what the driver creates must not rely on a lenient umask.
  process.umask(0o077);
  const dataDir = await mkdtemp(join(tmpdir(), 'porthole-test-'));
  const agentBundle = join(dataDir, 'porthole-agent.mjs');
  await copyFile(builtAgent, agentBundle);
  await chmod(agentBundle, 0o644);
  const driver = createGvisorDriver({ dataDir, sandboxUids, agentBundle });
  return {
    driver,
    dataDir,
    leftovers: (id) => gvisorLeftovers(dataDir, id),
    // A crash: the Sentry, its gofer and stubs die at once, as the host's OOM killer would do it.
    kill: async (id) => {
      for (const pid of await runscProcesses(join(sandboxDir(dataDir, id), 'bundle'))) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Gone meanwhile.
        }
      }
    },
    cleanup: () => rm(dataDir, { recursive: true, force: true }),
  };
}

driverConformance('gvisor', gvisorFixture);

/** Runs `script` (sh) inside the sandbox as its person, through runsc exec. */
async function inSandbox(dataDir: string, id: SandboxId, uid: number, script: string): Promise<string> {
  const { stdout } = await run('runsc', [`--root=${join(dataDir, 'runsc')}`, 'exec', '--user', `${uid}:${uid}`, id, '/bin/sh', '-c', script], {
    timeout: 60_000,
  });
  return stdout;
}

describe('gvisor driver', { timeout: 300_000 }, () => {
  let fixture: GvisorFixture | undefined;
  let driver: Driver;
  const id = conformanceSpec().id;

  before(async () => {
    fixture = await gvisorFixture();
    driver = fixture.driver;
    const handle = await driver.create(conformanceSpec({ id, desktop: false }));
    await waitUntilHealthy(handle.agent);
  });
  after(async () => {
    await driver?.destroy(id);
    await fixture?.cleanup();
  });

  it('a runsc that fails is an error of inspect and list, never a sandbox that exited (the reconciler would end its session)', async () => {
    // The same sandboxes, seen through a runsc that fails as one killed by a signal would.
    const failing = join(fixture!.dataDir, 'failing-runsc');
    await writeFile(failing, '#!/bin/sh\necho "runsc: interrupted" >&2\nexit 2\n', { mode: 0o755 });
    const blind = createGvisorDriver({ dataDir: fixture!.dataDir, sandboxUids, agentBundle: join(fixture!.dataDir, 'porthole-agent.mjs'), runsc: failing });
    await assert.rejects(blind.inspect(id), /interrupted|Command failed/);
    await assert.rejects(blind.list(), /interrupted|Command failed/);
    assert.equal((await driver.inspect(id))?.status, 'running');
  });

  it('runs the sandbox on gVisor’s kernel: uname -r and /proc/version are gVisor’s, not the host’s', async () => {
    const hostRelease = (await run('uname', ['-r'])).stdout.trim();
    const out = await inSandbox(fixture!.dataDir, id, sandboxUids.first, 'uname -r; cat /proc/version');
    const [release, procVersion] = out.trim().split('\n');
    assert.notEqual(release, hostRelease, `inside: ${release}; host: ${hostRelease}`);
    assert.doesNotMatch(procVersion!, new RegExp(hostRelease.replace(/[.+]/g, '\\$&')));
    assert.doesNotMatch(procVersion!, /Debian|gcc/i, procVersion);
  });

  // gVisor 20221219 has no /dev/tty of its own (EIO): xterm's child then never starts its shell,
  // and no sign-in CLI ever runs in a gVisor desktop (oci-spec.ts puts /dev/null in its place).
  it('lets a terminal’s child open /dev/tty, as xterm requires before it starts the shell', async () => {
    const out = await inSandbox(fixture!.dataDir, id, sandboxUids.first, 'exec 3<>/dev/tty && echo opened');
    assert.equal(out.trim(), 'opened');
  });
});

describe('gvisor driver with the server’s default limits', { timeout: 120_000 }, () => {
  // Under the ptrace platform each thread of the sandbox's is backed by host tasks of the Sentry:
  // an idle desktop is ≈ 900 host tasks, so 512 (the default PORTHOLE_SANDBOX_PIDS) taken as the
  // host's count killed every desktop within seconds (found by the quick start).
  let fixture: GvisorFixture | undefined;
  const id = conformanceSpec().id;
  after(async () => {
    await fixture?.driver.destroy(id);
    await fixture?.cleanup();
  });

  it('a desktop runs for 15 s within 1 GiB and 512 tasks and reaches no limit', async () => {
    const base = await gvisorFixture();
    await base.driver.close();
    const limits = { memoryBytes: 1024 * 2 ** 20, pids: 512, cpuWeight: 100 };
    const driver = createGvisorDriver({ dataDir: base.dataDir, sandboxUids, agentBundle: join(base.dataDir, 'porthole-agent.mjs'), limits });
    fixture = { ...base, driver };
    const handle = await driver.create(conformanceSpec({ id }));
    await waitUntilHealthy(handle.agent);
    for (let second = 0; second < 15; second++) {
      const info = await driver.inspect(id);
      assert.equal(info?.limitReached ?? null, null, `after ${second} s: ${info?.limitReached}`);
      assert.equal(info?.status, 'running', `after ${second} s: ${JSON.stringify(info)}`);
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
  });
});
