import { z } from 'zod';
import { errorCodes } from './errors.js';

// Persisted enum strings: changing one is a migration. test/protocol pins them.
export const sessionStates = ['starting', 'ready', 'authenticating', 'completed', 'failed', 'ended'] as const;
export type SessionState = (typeof sessionStates)[number];

export const terminalStates: readonly SessionState[] = ['completed', 'failed', 'ended'];

export function isTerminal(state: SessionState): boolean {
  return terminalStates.includes(state);
}

/**
 * The one transition table. A transition not listed here is refused by every store
 * (SESSION_STATE_CONFLICT); terminal states have no way out.
 */
export const transitions: Readonly<Record<SessionState, readonly SessionState[]>> = {
  starting: ['ready', 'failed', 'ended'],
  ready: ['authenticating', 'completed', 'failed', 'ended'],
  authenticating: ['ready', 'completed', 'failed', 'ended'],
  completed: [],
  failed: [],
  ended: [],
};

export function canTransition(from: SessionState, to: SessionState): boolean {
  return transitions[from].includes(to);
}

/** Why a session ended (state `ended`). */
export const endReasons = ['user', 'idle_timeout', 'max_lifetime', 'sandbox_exited', 'shutdown'] as const;
export type EndReason = (typeof endReasons)[number];

/** The start-up steps, in order; a boot timeout names the first one that did not answer. */
export const startSteps = ['sandbox', 'agent', 'vnc'] as const;
export type StartStep = (typeof startSteps)[number];

export const startStepLabels: Record<StartStep, string> = {
  sandbox: 'Starting the sandbox',
  agent: 'Waiting for the sandbox agent',
  vnc: 'Connecting to the desktop',
};

export const providerNames = ['demo', 'claude-code', 'codex', 'gemini-cli'] as const;
export type ProviderName = (typeof providerNames)[number];

export const sessionSchema = z.object({
  id: z.string(),
  state: z.enum(sessionStates),
  provider: z.string().nullable(),
  userId: z.string().nullable(),
  /** For terminal states: why (an end reason, or an error code for `failed`). */
  reason: z.string().nullable(),
  /** For `failed`: the human sentence naming the hop and cause. */
  detail: z.string().nullable(),
  sandboxId: z.string().nullable(),
  version: z.number().int(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type Session = z.infer<typeof sessionSchema>;

export const eventTypes = [
  'session.created',
  'session.ready',
  'session.authenticating',
  'session.completed',
  'session.failed',
  'session.ended',
  'step.started',
  'step.succeeded',
  'step.failed',
  'viewer.connected',
  'viewer.disconnected',
] as const;
export type EventType = (typeof eventTypes)[number];

export const sessionEventSchema = z.object({
  seq: z.number().int(),
  sessionId: z.string(),
  type: z.enum(eventTypes),
  from: z.enum(sessionStates).nullable(),
  to: z.enum(sessionStates).nullable(),
  reason: z.string().nullable(),
  details: z.record(z.string(), z.unknown()),
  at: z.string(),
});
export type SessionEvent = z.infer<typeof sessionEventSchema>;

// ---- API bodies ----

export const createSessionBody = z
  .object({
    /** One of providerNames; checked by the server so an unknown name gets PROVIDER_UNKNOWN with the list. */
    provider: z.string().min(1).max(64).optional(),
    userId: z.string().min(1).max(200).optional(),
  })
  .strict();
export type CreateSessionBody = z.infer<typeof createSessionBody>;

export const ticketResponse = z.object({
  ticket: z.string(),
  viewerUrl: z.string(),
  expiresAt: z.string(),
});
export type TicketResponse = z.infer<typeof ticketResponse>;

export const sessionListResponse = z.object({ sessions: z.array(sessionSchema) });
export const sessionEventsResponse = z.object({ events: z.array(sessionEventSchema) });

export const errorResponse = z.object({
  error: z.object({
    code: z.enum(errorCodes as [string, ...string[]]),
    message: z.string(),
    requestId: z.string().optional(),
    details: z.record(z.string(), z.unknown()).optional(),
  }),
});
