import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ApiClient } from '../../src/cli/api-client.js';
import { sandboxesDir } from '../../src/drivers/local-layout.js';
import { sandboxLeftovers } from '../../src/drivers/local/local-driver.js';
import { readRecord } from '../../src/drivers/local/sandbox-record.js';
import type { SandboxId } from '../../src/protocol/ids.js';
import { freshViewerUrl } from '../support/faults.js';
import { createTestDataDir, removeTestDataDir, startTestServerIn, type RestartableTestServer } from '../support/restartable-server.js';
import { isAlive, sandboxProcess, sandboxProcesses } from '../support/sandbox-processes.js';
import { processesOfUid } from '../support/sandbox-shell.js';
import { sessionStateWaiter, testApiKey, testEnv, testOutputDir } from '../support/server.js';
import { until } from '../support/until.js';
import { closeViewer, connectViewer, expectFramebufferUpdate } from '../support/ws.js';

// The orphan lease. A server that dies for good (SIGKILL: no shutdown, nothing cleaned) leaves its
// sandboxes running, as a restart should find them; each sandbox's agent ends it once no request
// has come for PORTHOLE_SANDBOX_LEASE_MS (the reconciler renews the lease on every tick). So a
// server killed and never started again leaves nothing running after about one lease, and the
// next server on the data directory ends the session (sandbox_exited) and cleans up. A server
// started again within the lease adopts the sandbox, which then outlives the lease.
//
// The server runs as a child process (`porthole start`), so that it can be SIGKILLed; the next
// one runs in this process.

const name = 'security-lease';
const leaseMs = 4_000;
const env = { PORTHOLE_SANDBOX_LEASE_MS: String(leaseMs), PORTHOLE_RECONCILE_INTERVAL_MS: '500' };
// A server takes about 4 s to start on this 2-core host (PGlite, migrations, the demo issuer), so
// the restart case needs a lease a restart fits in.
const adoptLeaseMs = 10_000;
const adoptEnv = { ...env, PORTHOLE_SANDBOX_LEASE_MS: String(adoptLeaseMs) };
const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

interface ChildServer {
  readonly child: ChildProcess;
  readonly url: string;
  readonly api: ApiClient;
  readonly logFile: string;
  /** SIGKILL, and wait until it is gone. */
  kill(): Promise<void>;
}

const children: ChildProcess[] = [];
const dataDirs: string[] = [];

/** `porthole start` on `dataDir`, configured as startTestServer's servers are (test/support/server.ts testConfig), plus `env`. */
async function spawnServer(dataDir: string, serverEnv: Record<string, string> = env): Promise<ChildServer> {
  const outDir = testOutputDir(name);
  await mkdir(outDir, { recursive: true });
  const logFile = join(outDir, 'server-child.log');
  const log = openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, [cli, 'start'], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...testEnv(dataDir), ...serverEnv },
      stdio: ['ignore', log, 'pipe'],
    });
  } finally {
    closeSync(log);
  }
  children.push(child);
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const started = await until(
    'the child server says where it runs',
    () => ({ stderr, exit: child.exitCode ?? child.signalCode }),
    (s) => /is running at http/.test(s.stderr) || s.exit !== null,
    60_000,
  );
  const url = /is running at (http:\/\/\S+)/.exec(started.stderr)?.[1];
  if (!url) throw new Error(`porthole start exited (${String(started.exit)}) before it listened; stderr: ${stderr.slice(-2000)}; log: ${logFile}`);
  return {
    child,
    url,
    api: new ApiClient(url, testApiKey),
    logFile,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

const agentLog = (dataDir: string, sandboxId: string) => readFile(join(sandboxesDir(dataDir), sandboxId, 'run', 'logs', 'agent.log'), 'utf8');

after(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const dataDir of dataDirs) {
    // Whatever happened, a server on the data directory ends the sessions and destroys the sandboxes.
    const cleaner = await startTestServerIn(dataDir, name, env).catch(() => undefined);
    if (cleaner) await cleaner.stop();
    else await removeTestDataDir(dataDir);
  }
});

test('server SIGKILLed and not restarted: the sandbox ends itself after its lease; the next server reports the session ended and cleans up', async (tc) => {
  const dataDir = await createTestDataDir();
  dataDirs.push(dataDir);
  const server = await spawnServer(dataDir);
  const created = await server.api.createSession({});
  const session = await sessionStateWaiter(server.api, server.logFile)(created.id, ['ready', 'authenticating', 'failed', 'ended']);
  assert.equal(session.state, 'ready', `${session.state}: ${session.detail}`);
  const sandboxId = session.sandboxId!;
  const record = await readRecord(join(sandboxesDir(dataDir), sandboxId));
  assert.ok(record?.agent, 'sandbox.json records the agent');
  assert.ok((await sandboxProcesses(sandboxId)).length > 0, 'the sandbox runs');

  const killedAt = Date.now();
  await server.kill();
  assert.ok(await isAlive(record.agent), 'the sandbox outlives its server (a restart would adopt it)');

  const left = await until(
    `no process of sandbox ${sandboxId} (uid ${record.uid}) is left`,
    async () => [...(await sandboxProcesses(sandboxId)).map((p) => `${p.pid} ${p.comm}`), ...(await processesOfUid(record.uid)).map((pid) => `uid ${pid}`)],
    (found) => found.length === 0,
    4 * leaseMs,
    { intervalMs: 100 },
  );
  assert.deepEqual(left, []);
  const goneMs = Date.now() - killedAt;
  // Its lease was last renewed at most one reconcile tick before the kill.
  assert.ok(goneMs >= leaseMs - 1_000, `the sandbox lived on for its lease: gone ${goneMs} ms after the kill`);
  assert.match(await agentLog(dataDir, sandboxId), /"event":"agent\.lease_expired"/, 'the agent ended the sandbox because its lease expired');
  tc.diagnostic(`server SIGKILL → every process of the sandbox gone after ${goneMs} ms (lease ${leaseMs} ms)`);

  const next: RestartableTestServer = await startTestServerIn(dataDir, name, env);
  try {
    const ended = await next.api.getSession(session.id);
    assert.equal(ended.state, 'ended', `${ended.state}: ${ended.detail}`);
    assert.equal(ended.reason, 'sandbox_exited');
    await until(
      `sandbox ${sandboxId} is gone from the data directory`,
      () => sandboxLeftovers(dataDir, sandboxId as SandboxId),
      (found) => found.length === 0,
      10_000,
    );
    assert.deepEqual(await next.server.driver.list(), []);
  } finally {
    await next.stop();
    dataDirs.splice(dataDirs.indexOf(dataDir), 1);
  }
});

test('server SIGKILLed and restarted within the lease: the session is adopted, outlives the lease, and a viewer connects', async (tc) => {
  const dataDir = await createTestDataDir();
  dataDirs.push(dataDir);
  const server = await spawnServer(dataDir, adoptEnv);
  const created = await server.api.createSession({});
  const session = await sessionStateWaiter(server.api, server.logFile)(created.id, ['ready', 'authenticating', 'failed', 'ended']);
  assert.equal(session.state, 'ready', `${session.state}: ${session.detail}`);
  const sandboxId = session.sandboxId!;
  const agent = await sandboxProcess(sandboxId, 'node');
  const xvnc = await sandboxProcess(sandboxId, 'Xvnc');

  const killedAt = Date.now();
  await server.kill();
  const next = await startTestServerIn(dataDir, name, adoptEnv);
  try {
    const restartMs = Date.now() - killedAt;
    assert.ok(restartMs < adoptLeaseMs, `restarted within the lease (${restartMs} ms)`);
    const adopted = await next.api.getSession(session.id);
    assert.equal(adopted.state, 'ready', 'adopted at start-up');
    assert.equal(adopted.sandboxId, sandboxId, 'the same sandbox');

    // Half a lease past the point where it would have ended unrenewed, the agent still runs: the new server renews the lease.
    const lived = await until(
      'the adopted sandbox runs past its lease',
      async () => ({ isAgentAlive: await isAlive(agent), ms: Date.now() - killedAt }),
      (s) => !s.isAgentAlive || s.ms > 1.5 * adoptLeaseMs,
      2 * adoptLeaseMs,
      { intervalMs: 250 },
    );
    assert.ok(lived.isAgentAlive, `the agent ended ${lived.ms} ms after the kill, though a server adopted it`);
    assert.ok(await isAlive(xvnc), 'Xvnc was never restarted');
    assert.doesNotMatch(await agentLog(dataDir, sandboxId), /agent\.lease_expired/);

    const viewer = await connectViewer(freshViewerUrl(next, session.id));
    await expectFramebufferUpdate(viewer);
    await next.waitForState(session.id, ['authenticating'], 5_000);
    await closeViewer(viewer);
    tc.diagnostic(
      `server SIGKILL → next server up ${restartMs} ms later adopted the session; the sandbox still ran ${lived.ms} ms after the kill (lease ${adoptLeaseMs} ms)`,
    );
  } finally {
    await next.stop();
    dataDirs.splice(dataDirs.indexOf(dataDir), 1);
  }
});
