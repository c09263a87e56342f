// Branded ids: a SessionId cannot be passed where a SandboxId is wanted.
declare const brand: unique symbol;
export type Brand<T, B extends string> = T & { readonly [brand]: B };

export type SessionId = Brand<string, 'SessionId'>;
export type SandboxId = Brand<string, 'SandboxId'>;

const alphabet = '0123456789abcdefghijklmnopqrstuvwxyz';

function randomId(prefix: string, length: number): string {
  const bytes = new Uint8Array(length);
  crypto.getRandomValues(bytes);
  let out = prefix;
  for (const b of bytes) out += alphabet[b % 36];
  return out;
}

export const sessionIdPattern = /^ses_[0-9a-z]{20}$/;
export const sandboxIdPattern = /^sbx_[0-9a-z]{20}$/;

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
