import { z } from 'zod';

// The agent ↔ server contract, shared by both sides. The agent serves GET /health on its unix
// socket (local driver) or its channel (kvm driver); the server reads it during start-up.

export const agentProcessNames = ['vnc', 'wm', 'terminal', 'browser'] as const;
export type AgentProcessName = (typeof agentProcessNames)[number];

export const agentProcessSchema = z.object({
  name: z.enum(agentProcessNames),
  pid: z.number().int().nullable(),
  running: z.boolean(),
  restarts: z.number().int(),
  /** How the last run ended: "exit 1", "signal SIGKILL", or null while it has not ended. */
  lastExit: z.string().nullable(),
});

export const agentHealthSchema = z.object({
  version: z.string(),
  /** true once every supervised process runs and the VNC socket exists. */
  healthy: z.boolean(),
  display: z.string(),
  uptimeMs: z.number(),
  processes: z.array(agentProcessSchema),
});
export type AgentHealth = z.infer<typeof agentHealthSchema>;

/** What the server hands the agent at start, as the JSON file named by PORTHOLE_AGENT_CONFIG. */
export const agentConfigSchema = z.object({
  sandboxId: z.string(),
  /** Unix socket the agent serves its health on. */
  agentSocket: z.string(),
  /** Unix socket the VNC server listens on. */
  vncSocket: z.string(),
  width: z.number().int().min(320).max(7680),
  height: z.number().int().min(200).max(4320),
  /** The page the sandbox's Chromium opens first. */
  startUrl: z.string(),
});
export type AgentConfig = z.infer<typeof agentConfigSchema>;
