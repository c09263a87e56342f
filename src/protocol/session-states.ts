// The session facts every side needs at run time, with no zod: the viewer bundles this file, and
// zod would add ≈450 KB to pages that validate nothing. src/protocol/session.ts adds the schemas.

// Persisted enum strings: changing one is a migration. test/protocol pins them.
export const sessionStates = ['starting', 'ready', 'authenticating', 'completed', 'failed', 'ended'] as const;
export type SessionState = (typeof sessionStates)[number];

export const terminalStates: readonly SessionState[] = ['completed', 'failed', 'ended'];

/** The states a session has a sandbox in (or is getting one): what counts against the session limit and what the reconciler checks. */
export const liveStates: readonly SessionState[] = ['starting', 'ready', 'authenticating'];

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
/** `login` runs only for a session with a provider: the agent starts the CLI and reaches the server with its token. */
export const startSteps = ['sandbox', 'agent', 'vnc', 'login'] as const;
export type StartStep = (typeof startSteps)[number];

export const startStepLabels: Record<StartStep, string> = {
  sandbox: 'Starting the sandbox',
  agent: 'Waiting for the sandbox agent',
  vnc: 'Connecting to the desktop',
  login: 'Starting the sign-in',
};

/**
 * What a succeeded step's event adds for people, or null: the sandbox step says whether the
 * desktop came warm from the pool (started ahead) or cold (started for this session).
 */
export function startStepNote(step: unknown, details: Record<string, unknown>): string | null {
  if (step !== 'sandbox' || typeof details.warm !== 'boolean') return null;
  return details.warm ? 'warm: a desktop started ahead' : 'cold: started for this session';
}

export const providerNames = ['demo', 'claude-code', 'codex', 'gemini-cli'] as const;
export type ProviderName = (typeof providerNames)[number];

/** What people read for each provider (dashboard, viewer), in the order the dashboard offers them. */
export const providerLabels: Record<ProviderName, string> = {
  demo: 'porthole demo',
  'claude-code': 'Claude Code',
  codex: 'Codex',
  'gemini-cli': 'Gemini CLI',
};

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
  'login.started',
  'login.waiting',
  'login.browser_opened',
  'login.exited',
  'login.failed',
  'credentials.stored',
  /** Audit: the credential was handed out (details: requestId, apiKeyId; never content). */
  'credentials.read',
  /** porthole refreshed the grant (details: expiresAt, refreshCount; never a token). */
  'credential.refreshed',
  /** A refresh could not be done now and will be tried again (details: reason, failures, nextAttemptAt). */
  'credential.refresh_failed',
  /** The provider refused the refresh: the person must sign in again (details: reason). */
  'credential.needs_login',
  /** The sandbox's network use through the egress proxy: host, port, allowed or refused (and why), bytes. Never a path or query. */
  'egress.connect',
  'egress.request',
] as const;
export type EventType = (typeof eventTypes)[number];
