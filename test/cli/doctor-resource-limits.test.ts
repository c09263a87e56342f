import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runDoctor } from '../../src/cli/doctor.js';
import { ConfigError, loadConfig } from '../../src/server/config.js';
import { runAsUser, stagedPath } from '../support/as-user.js';

// The per-sandbox limits as configured (PORTHOLE_SANDBOX_*), and `porthole doctor`'s check of which
// of them this host can enforce: as root on this machine's cgroup v1, then as an unprivileged user.

const cli = new URL('../../src/cli/main.js', import.meta.url).pathname;
const unprivilegedUid = 61999;

test('sandbox limits: defaults, overrides, ranges, and a home that must fit in the memory', () => {
  assert.deepEqual(loadConfig({}).sandboxLimits, { memoryMiB: 1024, pids: 512, cpuWeight: 100, homeMiB: 256 });
  const config = loadConfig({
    PORTHOLE_SANDBOX_MEMORY_MIB: '2048',
    PORTHOLE_SANDBOX_PIDS: '1000',
    PORTHOLE_SANDBOX_CPU_WEIGHT: '50',
    PORTHOLE_SANDBOX_HOME_MIB: '512',
  });
  assert.deepEqual(config.sandboxLimits, { memoryMiB: 2048, pids: 1000, cpuWeight: 50, homeMiB: 512 });
  assert.ok(Object.isFrozen(config.sandboxLimits));
  assert.throws(
    () => loadConfig({ PORTHOLE_SANDBOX_MEMORY_MIB: '32', PORTHOLE_SANDBOX_PIDS: 'many', PORTHOLE_SANDBOX_CPU_WEIGHT: '10001' }),
    (error: unknown) =>
      error instanceof ConfigError &&
      ['PORTHOLE_SANDBOX_MEMORY_MIB', 'PORTHOLE_SANDBOX_PIDS', 'PORTHOLE_SANDBOX_CPU_WEIGHT'].every((n) => error.problems.some((p) => p.startsWith(n))),
  );
  assert.throws(
    () => loadConfig({ PORTHOLE_SANDBOX_MEMORY_MIB: '256', PORTHOLE_SANDBOX_HOME_MIB: '256' }),
    /PORTHOLE_SANDBOX_HOME_MIB: 256 must be less than PORTHOLE_SANDBOX_MEMORY_MIB \(256\)/,
  );
});

test('doctor as root on this host: the configured memory and task limits are enforced, and where', async () => {
  assert.equal(process.getuid?.(), 0, 'prerequisite: the tests run as root (as the server does)');
  const report = await runDoctor({ PORTHOLE_SANDBOX_MEMORY_MIB: '2048', PORTHOLE_SANDBOX_PIDS: '300', PORTHOLE_PORT: '0' });
  const check = report.checks.find((c) => c.name === 'resource limits');
  assert.ok(check, 'no resource limits check');
  assert.equal(check.status, 'ok', check.detail);
  assert.match(
    check.detail,
    /^2 GiB of memory and 300 tasks per sandbox enforced; cgroup v1: memory \(swap included\) in \/sys\/fs\/cgroup\/memory\/\S*porthole-sandboxes, pids in /,
  );
  assert.equal(check.fix, null);
});

test('doctor as an unprivileged user: info, saying why, and what to do', async () => {
  // Exit 1 is expected: other checks (the data directory in /) fail for this user; the JSON is printed anyway.
  const result = await runAsUser(unprivilegedUid, process.execPath, [stagedPath(cli), 'doctor', '--json'], { env: { PATH: '/usr/bin:/bin' } }).catch(
    (error: { stdout: string }) => error,
  );
  const report = JSON.parse(result.stdout) as { checks: { name: string; status: string; detail: string; fix: string | null }[] };
  const check = report.checks.find((c) => c.name === 'resource limits');
  assert.deepEqual(check, {
    name: 'resource limits',
    status: 'info',
    detail:
      `1 GiB of memory and 512 tasks per sandbox wanted, memory and tasks not enforced (one sandbox can exhaust the host); ` +
      `porthole runs as uid ${unprivilegedUid}, not root: it cannot create cgroups, so sandboxes run without memory, process or cpu limits`,
    fix: 'run porthole as root: it then puts each sandbox in a cgroup of its own',
  });
});
