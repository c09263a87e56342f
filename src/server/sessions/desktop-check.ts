import type { SandboxHandle } from '../../drivers/driver.js';
import { fetchAgentHealth, readRfbBanner } from '../../drivers/endpoint-probes.js';
import type { AgentHealth } from '../../protocol/agent.js';
import type { ErrorCode } from '../../protocol/errors.js';
import { version } from '../../protocol/version.js';

// What "the desktop answers" means, for a session's boot (boot.ts) and for the warm pool
// (warm-pool.ts) alike: the agent is healthy and of the server's version, and the VNC server
// greets with an RFB banner.

/** Why an agent's health does not do: a code when retrying cannot help (a stale agent), else only a reason. */
export function agentHealthProblem(health: AgentHealth): { code: ErrorCode | null; reason: string } | null {
  if (health.version !== version) {
    return { code: 'AGENT_VERSION_MISMATCH', reason: `The sandbox agent runs version ${health.version}; the server runs ${version}.` };
  }
  if (!health.healthy) {
    const down = health.processes.filter((p) => !p.running).map((p) => `${p.name}${p.lastExit ? ` (${p.lastExit})` : ''}`);
    return { code: null, reason: `agent reports not healthy: ${down.join(', ') || 'desktop still starting'}` };
  }
  return null;
}

/** Why a VNC greeting does not do, or null. */
export function bannerProblem(banner: string): string | null {
  return banner.startsWith('RFB ') ? null : `not an RFB server: banner ${JSON.stringify(banner)}`;
}

/**
 * One look at a whole desktop, both hops at once: the agent's health, then whether it answers as a
 * desktop that never served anyone (no login started), and the RFB banner. Returns the first
 * problem as a sentence, or null when it answers. Never throws.
 */
export async function unusedDesktopProblem(handle: SandboxHandle, options: { signal?: AbortSignal; timeoutMs: number }): Promise<string | null> {
  const [health, banner] = await Promise.allSettled([fetchAgentHealth(handle.agent, options), readRfbBanner(handle.vnc, options)]);
  if (health.status === 'rejected') return `the agent did not answer: ${describe(health.reason)}`;
  const agent = agentHealthProblem(health.value);
  if (agent) return agent.reason;
  if (health.value.login !== null) return `a login was started in it (${health.value.login.provider})`;
  if (banner.status === 'rejected') return `the VNC server did not answer: ${describe(banner.reason)}`;
  return bannerProblem(banner.value);
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
