import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { access, chmod, constants, copyFile, mkdtemp, rm } from 'node:fs/promises';
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
// The server's umask (src/server/main.ts): the driver must set every mode a sandbox's person needs
// itself. Without it here, a bundle whose / was 0700 passed these tests and failed in the server.
process.umask(0o077);

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

  it('runs the sandbox on gVisor’s kernel: uname -r and /proc/version are gVisor’s, not the host’s', async () => {
    const hostRelease = (await run('uname', ['-r'])).stdout.trim();
    const out = await inSandbox(fixture!.dataDir, id, sandboxUids.first, 'uname -r; cat /proc/version');
    const [release, procVersion] = out.trim().split('\n');
    assert.notEqual(release, hostRelease, `inside: ${release}; host: ${hostRelease}`);
    assert.doesNotMatch(procVersion!, new RegExp(hostRelease.replace(/[.+]/g, '\\$&')));
    assert.doesNotMatch(procVersion!, /Debian|gcc/i, procVersion);
  });
});
