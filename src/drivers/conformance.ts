import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AgentHealth } from '../protocol/agent.js';
import { AppError } from '../protocol/errors.js';
import { newSandboxId, type SandboxId } from '../protocol/ids.js';
import { version } from '../protocol/version.js';
import type { Driver, Endpoint, SandboxInfo, SandboxSpec } from './driver.js';
import { fetchAgentHealth, readRfbBanner } from './endpoint-probes.js';

// The suite every driver passes: real sandboxes, real agents, real VNC servers. A driver's test
// file calls driverConformance() with a setup that builds the driver over a scratch state
// directory; every sandbox the suite creates is destroyed afterwards, even after a failure, and
// whatever is left of it fails the suite with its id.

export interface ConformanceFixture {
  readonly driver: Driver;
  /** What is left of a sandbox (processes, sockets, directories, …); empty once destroyed. */
  leftovers(id: SandboxId): Promise<string[]>;
  /** SIGKILL every process of the sandbox behind the driver's back, as a crash would. */
  kill(id: SandboxId): Promise<void>;
  /** Releases the fixture (scratch directories, …). */
  cleanup(): Promise<void>;
}

export const healthyWithinMs = 20_000;

export function conformanceSpec(overrides: Partial<SandboxSpec> = {}): SandboxSpec {
  return { id: newSandboxId(), width: 1024, height: 768, startUrl: 'about:blank', ...overrides };
}

/** Polls the agent until it reports healthy; fails with the last answer or error. */
export async function waitUntilHealthy(endpoint: Endpoint, timeoutMs = healthyWithinMs): Promise<AgentHealth> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  while (Date.now() < deadline) {
    try {
      const health = await fetchAgentHealth(endpoint, { timeoutMs: 2_000 });
      if (health.healthy) return health;
      last = health;
    } catch (error) {
      last = error instanceof AppError ? { code: error.code, details: error.details } : error;
    }
    await sleep(100);
  }
  assert.fail(`agent not healthy within ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
}

async function waitForStatus(driver: Driver, id: SandboxId, status: SandboxInfo['status'], timeoutMs = 10_000): Promise<SandboxInfo> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = await driver.inspect(id);
    if (info?.status === status) return info;
    if (Date.now() > deadline) assert.fail(`sandbox ${id} not ${status} within ${timeoutMs} ms: ${JSON.stringify(info)}`);
    await sleep(100);
  }
}

function isStartFailed(error: unknown): boolean {
  return error instanceof AppError && error.code === 'SANDBOX_START_FAILED';
}

export function driverConformance(name: string, setup: () => Promise<ConformanceFixture>): void {
  describe(`driver conformance: ${name}`, { timeout: 300_000 }, () => {
    let fixture: ConformanceFixture | undefined;
    const created = new Set<SandboxId>();

    const driver = (): Driver => fixture!.driver;
    const create = (spec: SandboxSpec, signal?: AbortSignal) => {
      created.add(spec.id);
      return driver().create(spec, signal ? { signal } : {});
    };
    const assertGone = async (id: SandboxId): Promise<void> => {
      assert.equal(await driver().inspect(id), null, `inspect(${id}) after destroy`);
      assert.ok(!(await driver().list()).some((s) => s.id === id), `${id} still listed after destroy`);
      assert.deepEqual(await fixture!.leftovers(id), [], `leftovers of ${id}`);
    };

    before(async () => {
      fixture = await setup();
    });

    after(async () => {
      if (!fixture) return;
      const problems: string[] = [];
      for (const id of created) {
        await fixture.driver.destroy(id).catch((error: unknown) => problems.push(`${id}: destroy failed: ${String(error)}`));
        const left = await fixture.leftovers(id);
        if (left.length > 0) problems.push(`${id}: left ${left.join('; ')}`);
      }
      await fixture.driver.close();
      await fixture.driver.close(); // idempotent
      await fixture.cleanup();
      assert.deepEqual(problems, [], 'sandboxes left behind by the conformance suite');
    });

    it('starts a sandbox whose agent is healthy with this build’s version and whose VNC server answers', async () => {
      const spec = conformanceSpec();
      const started = Date.now();
      const handle = await create(spec);
      assert.equal(handle.id, spec.id);

      const health = await waitUntilHealthy(handle.agent);
      assert.equal(health.version, version);
      assert.deepEqual(health.processes.map((p) => p.name).sort(), ['browser', 'terminal', 'vnc', 'wm']);
      assert.ok(health.processes.every((p) => p.running && p.pid !== null));
      assert.match(await readRfbBanner(handle.vnc), /^RFB 003\.00[378]\n$/);
      const elapsedMs = Date.now() - started;

      const info = await driver().inspect(spec.id);
      assert.ok(info, `inspect(${spec.id}) of a running sandbox`);
      assert.equal(info.status, 'running');
      assert.equal(info.exit, null);
      assert.deepEqual({ vnc: info.vnc, agent: info.agent }, { vnc: handle.vnc, agent: handle.agent });
      assert.ok(!Number.isNaN(Date.parse(info.startedAt)) && Date.parse(info.startedAt) <= Date.now());
      const listed = (await driver().list()).find((s) => s.id === spec.id);
      assert.equal(listed?.status, 'running');

      // Not idempotent: the same id again fails, and the running sandbox is untouched.
      await assert.rejects(driver().create(spec), isStartFailed);
      assert.equal((await fetchAgentHealth(handle.agent)).healthy, true);

      await driver().destroy(spec.id);
      await assertGone(spec.id);
      await driver().destroy(spec.id); // twice
      await assertGone(spec.id);
      // Connecting to a destroyed sandbox fails with the socket's own errno, not a generic error.
      await assert.rejects(fetchAgentHealth(handle.agent), (error: unknown) => error instanceof AppError && error.code === 'SANDBOX_UNREACHABLE');
      assert.ok(elapsedMs < healthyWithinMs);
    });

    it('destroys an unknown id without error and reports it as absent', async () => {
      const id = newSandboxId();
      await driver().destroy(id);
      assert.equal(await driver().inspect(id), null);
      assert.equal(await driver().inspect('not-an-id' as SandboxId), null);
    });

    it('runs two sandboxes at once, each with its own display', async () => {
      const specs = [conformanceSpec(), conformanceSpec({ width: 800, height: 600 })];
      const handles = await Promise.all(specs.map((spec) => create(spec)));
      const healths = await Promise.all(handles.map((h) => waitUntilHealthy(h.agent)));
      assert.ok(healths.every((h) => h.healthy));
      const banners = await Promise.all(handles.map((h) => readRfbBanner(h.vnc)));
      assert.ok(banners.every((b) => b.startsWith('RFB ')));
      // Both still healthy once both run: a display collision kills one of the VNC servers.
      await sleep(1_000);
      for (const h of handles) {
        const health = await fetchAgentHealth(h.agent);
        assert.equal(health.healthy, true, JSON.stringify(health));
        assert.equal(health.processes.find((p) => p.name === 'vnc')?.restarts, 0);
      }
      const listed = await driver().list();
      for (const spec of specs) assert.equal(listed.find((s) => s.id === spec.id)?.status, 'running');
      // One with the agent's grace, one at once (as a fence destroys): neither leaves anything.
      await Promise.all(specs.map((spec, i) => driver().destroy(spec.id, { now: i === 1 })));
      for (const spec of specs) await assertGone(spec.id);
    });

    it('leaves nothing behind when create is aborted', async () => {
      const early = conformanceSpec();
      await assert.rejects(create(early, AbortSignal.abort()), isStartFailed);
      await assertGone(early.id);

      // Aborted at various points while it starts: whatever had been acquired is released.
      for (const delayMs of [0, 1, 3, 10, 30]) {
        const spec = conformanceSpec();
        const controller = new AbortController();
        const creating = create(spec, controller.signal);
        setTimeout(() => controller.abort(), delayMs);
        const outcome = await creating.then(
          () => 'started',
          (error: unknown) => (isStartFailed(error) ? 'aborted' : error),
        );
        if (outcome === 'started') await driver().destroy(spec.id);
        else assert.equal(outcome, 'aborted');
        await assertGone(spec.id);
      }
    });

    it('reports a sandbox whose processes were killed as exited, and destroys it', async () => {
      const spec = conformanceSpec();
      const handle = await create(spec);
      await waitUntilHealthy(handle.agent);
      await fixture!.kill(spec.id);
      const info = await waitForStatus(driver(), spec.id, 'exited');
      assert.ok(info.exit === null || typeof info.exit === 'string');
      assert.equal((await driver().list()).find((s) => s.id === spec.id)?.status, 'exited');
      await driver().destroy(spec.id);
      await assertGone(spec.id);
    });
  });
}
