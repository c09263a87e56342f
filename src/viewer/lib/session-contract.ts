// The few session facts the pages need at run time. src/protocol/session.ts holds them too, but
// importing any value from it bundles zod (≈450 KB minified) into pages that never validate
// anything. These copies are typed against session.ts — `typeof` of its exact tuples and records —
// so a new, renamed or reordered state, step or provider fails the typecheck here instead of
// drifting. Only the label wording could drift; a test can compare it with session.ts at run time.

import type {
  SessionState,
  providerNames as protocolProviderNames,
  startStepLabels as protocolStartStepLabels,
  startSteps as protocolStartSteps,
} from '../../protocol/session.js';

export const startSteps: typeof protocolStartSteps = ['sandbox', 'agent', 'vnc'];

export const startStepLabels: typeof protocolStartStepLabels = {
  sandbox: 'Starting the sandbox',
  agent: 'Waiting for the sandbox agent',
  vnc: 'Connecting to the desktop',
};

export const providerNames: typeof protocolProviderNames = ['demo', 'claude-code', 'codex', 'gemini-cli'];

const isTerminalState: Record<SessionState, boolean> = {
  starting: false,
  ready: false,
  authenticating: false,
  completed: true,
  failed: true,
  ended: true,
};

export function isTerminal(state: SessionState): boolean {
  return isTerminalState[state];
}
