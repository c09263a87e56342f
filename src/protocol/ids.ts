import { z } from 'zod';

// Branded ids: a SessionId cannot be passed where a SandboxId is wanted. The schema is the one way
// from a plain string to an id: parsing a route's params (or a stored row) with it yields the
// branded type, so nothing downstream casts.

export const sessionIdPattern = /^ses_[0-9a-z]{20}$/;
export const sandboxIdPattern = /^sbx_[0-9a-z]{20}$/;
export const runIdPattern = /^run_[0-9a-z]{20}$/;

export const sessionIdSchema = z.string().regex(sessionIdPattern, 'must be a session id (ses_…)').brand<'SessionId'>();
export const sandboxIdSchema = z.string().regex(sandboxIdPattern, 'must be a sandbox id (sbx_…)').brand<'SandboxId'>();

export type SessionId = z.output<typeof sessionIdSchema>;
export type SandboxId = z.output<typeof sandboxIdSchema>;
export const runIdSchema = z.string().regex(runIdPattern, 'must be a run id (run_…)').brand<'RunId'>();
export type RunId = z.output<typeof runIdSchema>;

const alphabet = '0123456789abcdefghijklmnopqrstuvwxyz';

function randomId(prefix: string, length: number): string {
  const bytes = new Uint8Array(length);
  crypto.getRandomValues(bytes);
  let out = prefix;
  for (const b of bytes) out += alphabet[b % 36];
  return out;
}

export function newSessionId(): SessionId {
  return randomId('ses_', 20) as SessionId;
}

export function newSandboxId(): SandboxId {
  return randomId('sbx_', 20) as SandboxId;
}

export function isSessionId(value: string): value is SessionId {
  return sessionIdPattern.test(value);
}

export function isSandboxId(value: string): value is SandboxId {
  return sandboxIdPattern.test(value);
}

export function newRunId(): RunId {
  return randomId('run_', 20) as RunId;
}
