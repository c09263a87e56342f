import assert from 'node:assert/strict';
import { fetchAgentHealth } from '../../src/drivers/endpoint-probes.js';
import { gvisorLeftovers } from '../../src/drivers/gvisor/gvisor-driver.js';
import { sandboxLeftovers } from '../../src/drivers/local/local-driver.js';
import type { AgentHealth } from '../../src/protocol/agent.js';
import { sessionDiagnosisSchema, type DiagnosisHop, type HopReport, type SessionDiagnosis } from '../../src/protocol/diagnosis.js';
import type { SandboxId, SessionId } from '../../src/protocol/ids.js';
import type { Session } from '../../src/protocol/session.js';
import { sandboxProcesses } from './sandbox-processes.js';
import { testApiKey, type TestServer } from './server.js';
import { connectViewer, viewerSocketUrl, type ConnectedViewer } from './ws.js';
import { until } from './until.js';

// Shared by the fault tests (test/faults): a watched session, the agent's health, and the check
// that a sandbox left nothing behind.

/** A viewer socket URL with a fresh ticket signed by this server. */
export function freshViewerUrl(t: Pick<TestServer, 'server'>, sessionId: string): string {
  return viewerSocketUrl(t.server.url, sessionId, t.server.tickets.issue(sessionId as SessionId).ticket);
}

/** A ready session with a viewer that completed the RFB handshake (the session is then `authenticating`). */
export async function watchedSession(t: TestServer): Promise<{ session: Session; sandboxId: string; viewer: ConnectedViewer }> {
  const session = await t.readySession();
  assert.ok(session.sandboxId, 'a ready session has a sandbox');
  const viewer = await connectViewer(freshViewerUrl(t, session.id));
  await t.waitForState(session.id, ['authenticating'], 5_000);
  return { session, sandboxId: session.sandboxId, viewer };
}

/** GET /health of the sandbox's agent, through the driver's endpoint. */
export async function agentHealth(t: Pick<TestServer, 'server'>, sandboxId: string): Promise<AgentHealth> {
  const info = await t.server.driver.inspect(sandboxId as SandboxId);
  assert.ok(info, `sandbox ${sandboxId} is known to the driver`);
  return fetchAgentHealth(info.agent);
}

/** GET /v1/sessions/:id/diagnosis, as `porthole sessions diagnose` reads it. */
export async function diagnose(t: Pick<TestServer, 'server'>, sessionId: string): Promise<SessionDiagnosis> {
  const response = await fetch(`${t.server.url}/v1/sessions/${sessionId}/diagnosis`, { headers: { authorization: `Bearer ${testApiKey}` } });
  const body: unknown = await response.json();
  assert.equal(response.status, 200, JSON.stringify(body));
  return sessionDiagnosisSchema.parse(body);
}

export function hopOf(diagnosis: SessionDiagnosis, hop: DiagnosisHop): HopReport {
  const found = diagnosis.hops.find((h) => h.hop === hop);
  assert.ok(found, `the diagnosis has a ${hop} hop`);
  return found;
}

/** One line per hop, for assertion messages: "✘ vnc 3002 ms ETIMEDOUT on …". */
export function showDiagnosis(diagnosis: SessionDiagnosis): string {
  return diagnosis.hops.map((h) => `${h.result === 'ok' ? '✔' : h.result === 'failed' ? '✘' : '–'} ${h.hop} ${h.ms} ms ${h.cause}`).join('\n');
}

/** Rejects when `promise` does not settle within `ms`. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
    }),
  ]);
}

/**
 * After its session ended: neither the driver, nor /proc (or runsc), nor the data dir, nor the relay knows the
 * sandbox. The state is `ended` as soon as the transition commits; the sandbox is destroyed right
 * after (the reconciler's end() is still at it when a poll sees `ended`), so the driver gets a moment.
 */
export async function assertNothingLeft(t: TestServer, sandboxId: string): Promise<void> {
  await until(
    'the driver lists no sandbox once the session ended',
    () => t.server.driver.list(),
    (list) => list.length === 0,
    10_000,
    { intervalMs: 50 },
  );
  assert.deepEqual(await sandboxRemains(t, sandboxId), [], 'no process, socket or directory of the sandbox remains');
  assert.deepEqual(t.server.relay.stats(), [], 'the relay holds no connection');
}

/**
 * What is left of a sandbox, found apart from the driver's own list: for the local driver, the
 * processes carrying its marker (sandbox-processes.ts) and its sockets and directory; for gvisor,
 * its host processes (Sentry, gofer, stubs), runsc's container, sockets and directory: the person's
 * processes are the Sentry's tasks and go with it.
 */
export async function sandboxRemains(t: Pick<TestServer, 'server' | 'dataDir'>, sandboxId: string): Promise<string[]> {
  if (t.server.driver.name === 'gvisor') return gvisorLeftovers(t.dataDir, sandboxId as SandboxId);
  const processes = (await sandboxProcesses(sandboxId)).map((p) => `process ${p.pid} (${p.comm})`);
  return [...processes, ...(await sandboxLeftovers(t.dataDir, sandboxId as SandboxId))];
}
