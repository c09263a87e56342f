import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { build } from 'esbuild';
import { startTestServer, type TestServer } from '../support/server.js';
import { until } from '../support/until.js';

// A boot that does not become ready fails, naming the step that did not answer; an agent of
// another version is refused rather than used. Either way nothing is left running.

const root = new URL('../../../', import.meta.url).pathname;
let scratch: string;
before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'porthole-test-agent-'));
  await chmod(scratch, 0o755); // the sandbox uid reads the bundle from here
});
after(() => rm(scratch, { recursive: true, force: true }));

/**
 * A bundle the sandbox uid can read: 0644 by chmod, since a test server started in this process
 * set the umask to 077 (src/server/main.ts) and writeFile's mode passes through it. Without it the
 * agent dies on EACCES at once, and the test would see that rather than what it meant to.
 */
async function writeBundle(path: string, text: string): Promise<void> {
  await writeFile(path, text);
  await chmod(path, 0o644);
}

async function expectFailure(t: TestServer, code: string) {
  const created = await t.api.createSession({});
  const failed = await t.waitForState(created.id, ['failed', 'ready', 'ended']);
  assert.equal(failed.state, 'failed', `session should fail, is ${failed.state}`);
  assert.equal(failed.reason, code);
  const { events } = await t.api.listEvents(failed.id);
  const stepFailed = events.find((e) => e.type === 'step.failed');
  assert.ok(stepFailed, 'a step.failed event is in the timeline');
  // The last state event (the sandbox's egress events, if any, may follow it).
  assert.equal(events.filter((e) => e.type.startsWith('session.')).at(-1)?.type, 'session.failed');
  // The state moves first (viewers learn at once), then the sandbox is destroyed.
  await until(
    'the sandbox is destroyed',
    async () => (await t.server.driver.list()).length,
    (n) => n === 0,
    10_000,
    { intervalMs: 100 },
  );
  return { failed, step: String(stepFailed.details.step) };
}

test('a boot that misses its deadline fails with BOOT_TIMEOUT naming the step that did not answer', async () => {
  // An agent that starts but never serves its health: the sandbox step passes, the agent step
  // cannot, whatever the machine's speed (a short deadline alone races a fast boot).
  const silentAgent = join(scratch, 'silent-agent.mjs');
  await writeBundle(silentAgent, 'setInterval(() => {}, 60_000); // never serves GET /health\n');
  const t = await startTestServer('boot-timeout', { PORTHOLE_BOOT_TIMEOUT_MS: '2000' }, { agentBundle: silentAgent });
  try {
    const { failed, step } = await expectFailure(t, 'BOOT_TIMEOUT');
    assert.equal(step, 'agent');
    assert.match(failed.detail ?? '', /Start-up step "agent" \(Waiting for the sandbox agent\) did not answer within 2000 ms/);
  } finally {
    await t.stop();
  }
});

test('an agent that dies at start fails the boot at once (SANDBOX_START_FAILED, step agent, with how it exited), not at the deadline', async () => {
  // It runs long enough for the driver to see it started, then exits 3 without ever serving /health.
  const dyingAgent = join(scratch, 'dying-agent.mjs');
  await writeBundle(dyingAgent, "console.error('Error: this agent gives up'); setTimeout(() => process.exit(3), 1_000);\n");
  // A deadline far beyond the wait below: only noticing the exit can fail the boot in time.
  const t = await startTestServer('boot-agent-died', { PORTHOLE_BOOT_TIMEOUT_MS: '600000' }, { agentBundle: dyingAgent });
  try {
    const { failed, step } = await expectFailure(t, 'SANDBOX_START_FAILED');
    assert.equal(step, 'agent');
    assert.match(
      failed.detail ?? '',
      /Start-up step "agent" \(Waiting for the sandbox agent\) failed: the sandbox exited \((agent exited: )?exit 3\) before its agent answered/,
    );
  } finally {
    await t.stop();
  }
});

test('an agent of another version is refused with AGENT_VERSION_MISMATCH, naming both versions', async () => {
  const bundle = join(scratch, 'porthole-agent.mjs');
  await build({
    entryPoints: [join(root, 'src/agent/main.ts')],
    outfile: bundle,
    bundle: true,
    platform: 'node',
    format: 'esm',
    define: { __PORTHOLE_VERSION__: JSON.stringify('0.0.1-stale') },
    logLevel: 'warning',
  });
  await chmod(bundle, 0o644);
  const t = await startTestServer('boot-version', {}, { agentBundle: bundle });
  try {
    const { failed, step } = await expectFailure(t, 'AGENT_VERSION_MISMATCH');
    assert.equal(step, 'agent');
    assert.match(failed.detail ?? '', /0\.0\.1-stale/);
    assert.match(failed.detail ?? '', /server runs \d+\.\d+\.\d+/);
  } finally {
    await t.stop();
  }
});
