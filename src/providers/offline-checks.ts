import { isNonEmptyString, isObject, type JsonObject } from './credential-json.js';
import type { CredentialCheck, CredentialVerdict } from './provider.js';

// What a real provider's `verify` can check with no network to the provider's servers: the token
// formats the provider issues and the ID token's issuer and audience. None of it proves the tokens
// are live — a careful forger can match every format — which is why such a credential is stored as
// `offline-checks-only` and its account is only what the file claims. What it does stop: files that
// no sign-in with that provider could have written (a hand-made file, another provider's file,
// placeholder tokens). Pure: no I/O.

/** One offline check: null when it passes, else why not (a phrase naming the part, never content). */
export type OfflineCheck = () => string | null;

/**
 * The verdict of a real provider's offline checks on a file that validated: the first failing
 * check's reason, else `offline-checks-only` with the validator's account and expiry.
 */
export function offlineVerdict(check: CredentialCheck, checks: readonly OfflineCheck[]): CredentialVerdict {
  if (!check.ok) return { ok: false, reason: `the file does not validate (missing ${check.waitingFor})`, isRetryable: false };
  for (const run of checks) {
    const problem = run();
    if (problem !== null) return { ok: false, reason: problem, isRetryable: false };
  }
  return { ok: true, verification: 'offline-checks-only', account: check.account, expiresAt: check.expiresAt };
}

/** A token is a string of URL-safe characters: a space, quote or control character means it was typed or mangled. */
export function hasTokenForm(value: unknown, pattern: RegExp): boolean {
  return isNonEmptyString(value) && pattern.test(value);
}

const base64url = /^[A-Za-z0-9_-]+$/;

function decodeSegment(segment: string): JsonObject | null {
  if (!base64url.test(segment)) return null;
  try {
    const value: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
    return isObject(value) ? value : null;
  } catch {
    return null;
  }
}

/**
 * A signed JWT's header and claims (JWS compact form: three base64url parts, a header naming a
 * signing algorithm other than `none`, a JSON object payload, a signature). The signature itself is
 * not checked: the provider's keys are not reachable from here.
 */
export function signedJwt(token: unknown): { readonly header: JsonObject; readonly claims: JsonObject } | null {
  if (!isNonEmptyString(token)) return null;
  const parts = token.split('.');
  if (parts.length !== 3 || !parts[2] || !base64url.test(parts[2])) return null;
  const header = decodeSegment(parts[0] ?? '');
  const claims = decodeSegment(parts[1] ?? '');
  if (!header || !claims || !isNonEmptyString(header.alg) || header.alg.toLowerCase() === 'none') return null;
  return { header, claims };
}

/** Whether a JWT's `aud` (a string or a list) names `audience`. */
export function hasAudience(claims: JsonObject, audience: string): boolean {
  const aud = claims.aud;
  return aud === audience || (Array.isArray(aud) && aud.includes(audience));
}
