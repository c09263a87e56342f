import { isObject, type JsonObject } from './credential-json.js';
import type { RefreshOutcome, VerifyContext } from './provider.js';

// The one HTTP exchange every provider's refresh makes: the refresh grant (RFC 6749 section 6) to
// the provider's token endpoint, and what its answer means for the grant. The provider modules say
// what to send (their CLI's endpoint, client id and body shape) and how to write the answer back.

/** The request body: a form (RFC 6749) or JSON (Claude Code's token endpoint takes JSON). */
export type RefreshBody = { readonly form: Readonly<Record<string, string>> } | { readonly json: Readonly<Record<string, unknown>> };

export type RefreshAnswer = { readonly ok: true; readonly body: JsonObject } | Extract<RefreshOutcome, { ok: false }>;

/** OAuth error codes that say the grant itself is gone: only a new sign-in helps. */
const grantGoneErrors: ReadonlySet<string> = new Set(['invalid_grant', 'unauthorized_client', 'access_denied']);

/**
 * POSTs the refresh grant and classifies the answer. 200 with JSON: the body. An OAuth error that
 * says the grant is gone (`invalid_grant`, RFC 6749 section 5.2): refused. No answer, a 5xx, a 429 or
 * anything else odd: not refused (try again later: the grant may be fine). Never throws; the reason
 * names the endpoint's path and the provider's error code, never a token.
 */
export async function postRefreshGrant(
  context: VerifyContext,
  url: string,
  body: RefreshBody,
  headers: Readonly<Record<string, string>> = {},
): Promise<RefreshAnswer> {
  const where = safePath(url);
  let response: Response;
  try {
    response = await context.fetch(url, {
      method: 'POST',
      redirect: 'error',
      signal: context.signal,
      headers: {
        accept: 'application/json',
        'content-type': 'form' in body ? 'application/x-www-form-urlencoded' : 'application/json',
        ...headers,
      },
      body: 'form' in body ? new URLSearchParams(body.form).toString() : JSON.stringify(body.json),
    });
  } catch (error) {
    const cause = error instanceof Error ? (error.cause instanceof Error ? error.cause.message : error.message) : String(error);
    return { ok: false, refused: false, reason: `the token endpoint ${where} did not answer: ${cause}` };
  }
  let parsed: unknown = null;
  try {
    const text = await response.text();
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON: classified by its status below.
  }
  const answer = isObject(parsed) ? parsed : {};
  if (response.status === 200 && isObject(parsed)) return { ok: true, body: answer };
  const code = typeof answer.error === 'string' ? answer.error.slice(0, 64) : null;
  const description = typeof answer.error_description === 'string' ? `: ${answer.error_description.slice(0, 200)}` : '';
  const said = code ? `${code}${description}` : `HTTP ${response.status}`;
  if (response.status >= 400 && response.status < 500 && response.status !== 429 && code !== null && grantGoneErrors.has(code)) {
    return { ok: false, refused: true, reason: `the provider refused the refresh at ${where} (${said})` };
  }
  return { ok: false, refused: false, reason: `the token endpoint ${where} answered ${response.status} (${said})` };
}

/** `host/path` of an endpoint, for reasons: never a query string. */
function safePath(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.host}${parsed.pathname}`;
  } catch {
    return 'the token endpoint';
  }
}

/** An expiry from `expires_in` seconds (OAuth's token response), as ISO; null when absent or odd. */
export function expiryFromExpiresIn(expiresIn: unknown, now: number = Date.now()): string | null {
  const seconds = typeof expiresIn === 'number' ? expiresIn : typeof expiresIn === 'string' ? Number(expiresIn) : Number.NaN;
  if (!Number.isFinite(seconds) || seconds <= 0) return null;
  return new Date(now + seconds * 1000).toISOString();
}

/** A provider whose refresh porthole cannot do (yet): the answer is never "refused", so the grant is left alone. */
export async function notRefreshable(reason: string): Promise<RefreshOutcome> {
  return { ok: false, refused: false, reason };
}
