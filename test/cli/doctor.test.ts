import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { sandboxesDir } from '../../src/drivers/local-layout.js';
import { readSandboxPackages } from '../../src/cli/sandbox-packages.js';
import { readRecord } from '../../src/drivers/local/sandbox-record.js';
import { sessionDiagnosisSchema } from '../../src/protocol/diagnosis.js';
import type { SandboxId } from '../../src/protocol/ids.js';
import type { Session } from '../../src/protocol/session.js';
import { version } from '../../src/protocol/version.js';
import { runAsUser, stagedPath } from '../support/as-user.js';
import { startTestServer, testApiKey, testSandboxUids, type TestServer } from '../support/server.js';
import { until } from '../support/until.js';

// `porthole sessions diagnose` and `porthole doctor` as a person runs them: the built CLI in a
// child process, against a real server with a real sandbox, on this very host.

const run = promisify(execFile);
const cli = new URL('../../src/cli/main.js', import.meta.url).pathname;
let t: TestServer;
let session: Session;

before(async () => {
  // No reconcile pass: the last test kills the sandbox and wants the diagnosis, not the reconciler, to see it first.
  t = await startTestServer('doctor', { PORTHOLE_RECONCILE_INTERVAL_MS: '600000' });
  session = await t.readySession();
});
after(() => t?.stop());

function porthole(args: string[], env: Record<string, string> = {}) {
  return run(process.execPath, [cli, ...args], { env: { ...process.env, PORTHOLE_URL: t.server.url, PORTHOLE_API_KEY: testApiKey, ...env } }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

/** The test server's own configuration, as `porthole start` would have read it. */
const serverEnv = () => ({
  PORTHOLE_DATA_DIR: t.dataDir,
  PORTHOLE_SANDBOX_UIDS: testSandboxUids,
  PORTHOLE_HOST: '127.0.0.1',
  PORTHOLE_PORT: new URL(t.server.url).port,
});

const checkNames = [
  'configuration',
  ...(await readSandboxPackages()).map((p) => `package ${p.name}`),
  'node for the agent',
  'agent bundle',
  'resource limits',
  'user namespaces',
  '/dev/kvm',
  'runsc',
  'data directory',
  'socket paths',
  'signing key',
  'store',
  'port',
];

describe('porthole sessions diagnose', () => {
  test('one line per hop, in order; exit 0 when every hop answers', async () => {
    const result = await porthole(['sessions', 'diagnose', session.id]);
    assert.equal(result.code, 0, result.stderr + result.stdout);
    // The egress line (refused destinations: Chromium's own background requests, here) is not a hop.
    const lines = result.stdout
      .trimEnd()
      .split('\n')
      .filter((l) => !l.startsWith('egress: '));
    assert.match(lines[0] ?? '', new RegExp(`^session ${session.id} \\((ready|authenticating)\\), server ${version.replaceAll('.', '\\.')}, \\d+ ms$`));
    const expected = [
      /^✔ store +\d+ ms {2}(ready|authenticating), version \d+, sandbox sbx_[0-9a-z]+$/,
      /^✔ node +\d+ ms {2}\S+ \(this process\), generation \d+, active, heartbeat [\d.]+ s ago, lease 15 s$/,
      /^✔ driver +\d+ ms {2}running for \d+ (s|min)/,
      new RegExp(`^✔ agent +\\d+ ms {2}healthy, version ${version.replaceAll('.', '\\.')}`),
      /^✔ vnc +\d+ ms {2}banner RFB 003\.008, security None accepted$/,
      /^✔ relay +\d+ ms {2}banner RFB 003\.008, security None accepted through ws:\/\/127\.0\.0\.1:\d+\/v1\/sessions\/ses_[0-9a-z]+\/vnc$/,
    ];
    assert.equal(lines.length, 1 + expected.length, result.stdout);
    for (const [i, pattern] of expected.entries()) assert.match(lines[i + 1] ?? '', pattern);
  });

  test('--json prints the API’s answer', async () => {
    const result = await porthole(['sessions', 'diagnose', session.id, '--json']);
    assert.equal(result.code, 0, result.stderr);
    const diagnosis = sessionDiagnosisSchema.parse(JSON.parse(result.stdout));
    assert.equal(diagnosis.firstFailure, null);
    assert.deepEqual(
      diagnosis.hops.map((h) => h.result),
      ['ok', 'ok', 'ok', 'ok', 'ok', 'ok'],
    );
  });

  test('an unknown session exits 1 with SESSION_NOT_FOUND; no id exits 2', async () => {
    const unknown = await porthole(['sessions', 'diagnose', 'ses_00000000000000000000']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /^porthole: SESSION_NOT_FOUND: /);
    const usage = await porthole(['sessions', 'diagnose']);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /needs a session id/);
  });
});

describe('porthole doctor', () => {
  test('exits 0 on this host and prints every check, with the running server’s store and port', async () => {
    const result = await porthole(['doctor'], serverEnv());
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const lines = result.stdout.split('\n');
    for (const name of checkNames)
      assert.ok(
        lines.some((l) => new RegExp(`^[✔✘ℹ] ${name.replace('/', '\\/')} `).test(l)),
        `no line for ${name}:\n${result.stdout}`,
      );
    assert.match(result.stdout, /^✔ user namespaces +bwrap creates a user and a pid namespace as uid \d+/m);
    assert.match(result.stdout, /^✔ signing key +.*: mode 0600, 32 bytes$/m);
    assert.match(result.stdout, new RegExp(`^✔ store +porthole ${version.replaceAll('.', '\\.')} at http://127\\.0\\.0\\.1:\\d+ reads its store$`, 'm'));
    assert.match(result.stdout, /^✔ port +127\.0\.0\.1:\d+ is in use by porthole .* \(running\)$/m);
    // The local driver: runsc is only named (installed or not), never started, never a failure.
    assert.match(result.stdout, /^ℹ runsc +(runsc \S+ installed; not tried: the driver is local \(PORTHOLE_DRIVER=gvisor would use it\)|not installed .*)$/m);
    assert.doesNotMatch(result.stdout, /gvisor platform/);
    assert.match(result.stdout, /this host can run sandboxes\.$/m);
  });

  test('a port held by another program, or a bad variable, fails with exit 1 and says what to do', async () => {
    // Accepts and reads, never answers: not a porthole. (resume(): a socket nobody reads never sees
    // the client's FIN, and close() would wait for it forever.)
    const squatter: Server = createServer((socket) => socket.resume());
    await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
    try {
      const port = String((squatter.address() as AddressInfo).port);
      const result = await porthole(['doctor', '--json'], { ...serverEnv(), PORTHOLE_PORT: port });
      assert.equal(result.code, 1, result.stdout);
      const report = JSON.parse(result.stdout) as { ok: boolean; checks: Array<{ name: string; status: string; detail: string; fix: string | null }> };
      assert.equal(report.ok, false);
      const portCheck = report.checks.find((c) => c.name === 'port');
      assert.equal(portCheck?.status, 'failed');
      assert.equal(portCheck?.detail, `127.0.0.1:${port} is in use by another program`);
      assert.match(portCheck?.fix ?? '', /choose another PORTHOLE_PORT/);
      assert.deepEqual(
        report.checks.filter((c) => c.status === 'failed').map((c) => c.name),
        ['port'],
      );
    } finally {
      await new Promise((resolve) => squatter.close(resolve));
    }
    const bad = await porthole(['doctor'], { ...serverEnv(), PORTHOLE_PORT: 'eighty' });
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /^✘ configuration +PORTHOLE_PORT: /m);
    assert.match(bad.stdout, /→ fix the PORTHOLE_\* variables named/);
    assert.match(bad.stdout, /^ℹ port +not checked: the configuration is invalid$/m);
  });
});

interface Report {
  ok: boolean;
  checks: Array<{ name: string; status: string; detail: string; fix: string | null }>;
}

/**
 * `porthole doctor --json` with the gvisor driver, its temp directory (where the probe sandboxes'
 * scratch --root and bundles go) one of this test's own: after doctor, it must be empty, and no
 * process may name it (the Sentry and gofer carry their bundle on their command lines).
 */
async function gvisorDoctor(env: Record<string, string> = {}): Promise<{ code: number; report: Report; stdout: string }> {
  const scratch = await mkdtemp(join(tmpdir(), 'porthole-test-doctor-tmp-'));
  try {
    const result = await porthole(['doctor', '--json'], { ...serverEnv(), PORTHOLE_DRIVER: 'gvisor', TMPDIR: scratch, ...env });
    assert.deepEqual(await readdir(scratch), [], `the probes left files in ${scratch}`);
    const holders: string[] = [];
    for (const pid of (await readdir('/proc')).filter((name) => /^\d+$/.test(name))) {
      const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      if (cmdline.includes(scratch)) holders.push(`${pid}: ${cmdline.replaceAll('\0', ' ').slice(0, 160)}`);
    }
    assert.deepEqual(holders, [], 'processes of a probe sandbox outlived doctor');
    return { code: result.code, report: JSON.parse(result.stdout) as Report, stdout: result.stdout };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

const checkOf = (report: Report, name: string) => {
  const check = report.checks.find((c) => c.name === name);
  assert.ok(check, `no ${name} check: ${JSON.stringify(report.checks.map((c) => c.name))}`);
  return check;
};

describe('porthole doctor, gvisor driver', { timeout: 120_000 }, () => {
  test('runs a probe sandbox with runsc: it starts, its kernel is gVisor’s, and the platform line says ptrace and why', async () => {
    const { code, report, stdout } = await gvisorDoctor();
    assert.equal(code, 0, stdout);
    const runsc = checkOf(report, 'runsc');
    assert.equal(runsc.status, 'ok', runsc.detail);
    const seen =
      /^runsc \S+: a probe sandbox \(ptrace, --network=none, read-only root with \/usr, node as uid (\d+)\) ran in (\d+) ms \(runsc create (\d+) ms\); kernel (\S+) inside, gVisor's \(the host's is (\S+)\)$/.exec(
        runsc.detail,
      );
    assert.ok(seen, runsc.detail);
    const [, uid, ms, createMs, kernel, hostKernel] = seen;
    assert.equal(uid, testSandboxUids.split('-')[0]);
    assert.ok(Number(createMs) > 0 && Number(createMs) <= Number(ms), runsc.detail);
    assert.equal(hostKernel, release());
    assert.notEqual(kernel, release(), 'the probe saw the host’s kernel');

    const platform = checkOf(report, 'gvisor platform');
    assert.equal(platform.status, 'ok', platform.detail);
    assert.equal(platform.fix, null);
    const prefix = 'ptrace (PORTHOLE_GVISOR_PLATFORM=ptrace, the default), which works on any host; ';
    assert.ok(platform.detail.startsWith(prefix), platform.detail);
    // kvm is tried only where /dev/kvm exists; here (a nested PVM /dev/kvm) its sandbox never starts.
    const kvmSaid = platform.detail.slice(prefix.length);
    if (existsSync('/dev/kvm'))
      assert.match(
        kvmSaid,
        /^kvm tried \(\/dev\/kvm exists\): its probe sandbox (ran in \d+ ms \(runsc create \d+ ms\); PORTHOLE_GVISOR_PLATFORM=kvm may run sandboxes faster|did not start within 5\.0 s \(still at runsc \w+; killed and deleted\) — gVisor’s KVM platform hangs on some nested \/dev\/kvm, so ptrace|failed at .+, so ptrace)$/,
      );
    else assert.equal(kvmSaid, 'kvm is not possible: no /dev/kvm, so ptrace');
    assert.equal(report.ok, true);
  });

  test('PORTHOLE_GVISOR_PLATFORM=kvm fails doctor exactly when a kvm probe sandbox does not start, and says to use ptrace', async () => {
    const { code, report, stdout } = await gvisorDoctor({ PORTHOLE_GVISOR_PLATFORM: 'kvm' });
    assert.equal(checkOf(report, 'runsc').status, 'ok', 'ptrace still works');
    const platform = checkOf(report, 'gvisor platform');
    if (platform.status === 'ok') {
      assert.match(platform.detail, /^kvm \(PORTHOLE_GVISOR_PLATFORM=kvm\): its probe sandbox ran in \d+ ms/);
      assert.equal(code, 0, stdout);
      return;
    }
    assert.equal(platform.status, 'failed');
    assert.match(
      platform.detail,
      /^kvm \(PORTHOLE_GVISOR_PLATFORM=kvm\), but kvm (is not possible: no \/dev\/kvm|tried \(\/dev\/kvm exists\): its probe sandbox (did not start within 5\.0 s|failed at ))/,
    );
    assert.equal(platform.fix, 'set PORTHOLE_GVISOR_PLATFORM=ptrace, which works on any host');
    assert.equal(code, 1, stdout);
    assert.deepEqual(
      report.checks.filter((c) => c.status === 'failed').map((c) => c.name),
      ['gvisor platform'],
    );
  });

  test('as an unprivileged user: the gvisor driver needs root, doctor fails and says so', async () => {
    const unprivilegedUid = 61999;
    // Exit 1 for other reasons too (this user cannot write the data directory); the JSON is printed anyway.
    const result = await runAsUser(unprivilegedUid, process.execPath, [stagedPath(cli), 'doctor', '--json'], {
      env: { PATH: '/usr/bin:/bin', PORTHOLE_DRIVER: 'gvisor', PORTHOLE_PORT: '0' },
    }).catch((error: { stdout: string }) => error);
    const report = JSON.parse(result.stdout) as Report;
    assert.equal(report.ok, false);
    const runsc = checkOf(report, 'runsc');
    assert.equal(runsc.status, 'failed');
    assert.match(runsc.detail, new RegExp(`^runsc \\S+ installed, but the gvisor driver needs root .*; porthole runs as uid ${unprivilegedUid}$`));
    assert.equal(runsc.fix, 'run porthole as root, or PORTHOLE_DRIVER=local');
    assert.deepEqual(checkOf(report, 'gvisor platform'), { name: 'gvisor platform', status: 'info', detail: 'not checked: not root', fix: null });
  });
});

describe('porthole sessions diagnose, broken', () => {
  test('a sandbox killed behind the server’s back: ✘ driver with the exit, later hops skipped, exit 1 with the code', async () => {
    const sandboxId = session.sandboxId as SandboxId;
    const record = await readRecord(join(sandboxesDir(t.dataDir), sandboxId));
    assert.ok(record);
    process.kill(record.init.pid, 'SIGKILL');
    await until(
      'the driver sees the sandbox exit',
      () => t.server.driver.inspect(sandboxId),
      (info) => info?.exit != null,
      15_000,
      { intervalMs: 50 },
    );
    const result = await porthole(['sessions', 'diagnose', session.id]);
    assert.equal(result.code, 1, result.stdout);
    assert.match(result.stdout, /^✔ store +\d+ ms {2}/m);
    assert.match(result.stdout, /^✔ node +\d+ ms {2}/m);
    assert.match(result.stdout, /^✘ driver +\d+ ms {2}sandbox process exited with signal SIGKILL$/m);
    for (const hop of ['agent', 'vnc', 'relay']) assert.match(result.stdout, new RegExp(`^– ${hop} +– +not checked: the driver hop failed$`, 'm'));
    assert.match(result.stdout, /^first failure: driver \(SANDBOX_UNREACHABLE\)$/m);
    assert.equal(result.stderr, 'porthole: SANDBOX_UNREACHABLE: the driver hop failed: sandbox process exited with signal SIGKILL\n');
  });
});
