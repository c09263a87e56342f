// What the real CLIs' credential validators share: parsing a JSON object without throwing, and
// reading a JWT's claims without verifying it (the CLI verified the token when it received it; the
// agent only needs the expiry and the account to show). Pure: no I/O.

export type JsonObject = Readonly<Record<string, unknown>>;

export function isNonEmptyString(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0;
}

export function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The file's top-level object, or what it is still missing in the words a timeline shows.
 * "complete JSON" is what a half-written file looks like: the agent simply reads again.
 */
export function parseCredentialJson(content: string): { readonly ok: true; readonly value: JsonObject } | { readonly ok: false; readonly waitingFor: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(content);
  } catch {
    return { ok: false, waitingFor: 'complete JSON' };
  }
  return isObject(parsed) ? { ok: true, value: parsed } : { ok: false, waitingFor: 'a JSON object' };
}

/** A JWT's payload claims, unverified; null when the token is not a JWT with a JSON object payload. */
export function jwtClaims(token: unknown): JsonObject | null {
  if (!isNonEmptyString(token)) return null;
  const parts = token.split('.');
  if (parts.length !== 3 || !parts[1]) return null;
  try {
    const payload: unknown = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
    return isObject(payload) ? payload : null;
  } catch {
    return null;
  }
}

/** ISO time from a millisecond epoch, or null when it is not a plausible one. */
export function isoFromEpochMs(value: unknown): string | null {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

/** ISO time from a JWT `exp` claim (seconds since the epoch), or null. */
export function isoFromJwtExp(claims: JsonObject | null): string | null {
  const exp = claims?.exp;
  return typeof exp === 'number' ? isoFromEpochMs(exp * 1000) : null;
}
