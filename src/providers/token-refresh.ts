import { isObject, type JsonObject } from './credential-json.js';
import type { RefreshOutcome, VerifyContext } from './provider.js';

// The one HTTP exchange every provider's refresh makes: the refresh grant (RFC 6749 section 6) to
// the provider's token endpoint, and what its answer means for the grant. The provider modules say
// what to send (their CLI's endpoint, client id and body shape) and how to write the answer back.

/** The request body: a form (RFC 6749) or JSON (Claude Code's token endpoint takes JSON). */
export type RefreshBody = { readonly form: Readonly<Record<string, string>> } | { readonly json: Readonly<Record<string, unknown>> };

/**
 * `error`: the provider's error code when it named one (for a provider module that acts on a
 * particular code, e.g. Claude Code's retry after `invalid_scope`); never a token.
 */
export type RefreshAnswer = { readonly ok: true; readonly body: JsonObject } | (Extract<RefreshOutcome, { ok: false }> & { readonly error: string | null });

/** OAuth error codes that say the grant itself is gone: only a new sign-in helps. */
const grantGoneErrors: ReadonlySet<string> = new Set(['invalid_grant', 'unauthorized_client', 'access_denied']);

/** Whether an error answer says the grant is gone: the OAuth rule (RFC 6749 section 5.2), unless the provider's CLI knows better. */
export type GrantGoneRule = (status: number, code: string | null) => boolean;

/** The OAuth rule: a 4xx other than 429 naming `invalid_grant`, `unauthorized_client` or `access_denied`. */
export const isOAuthGrantGone: GrantGoneRule = (status, code) => status >= 400 && status < 500 && status !== 429 && code !== null && grantGoneErrors.has(code);

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
  isGrantGone: GrantGoneRule = isOAuthGrantGone,
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
    return { ok: false, refused: false, reason: `the token endpoint ${where} did not answer: ${cause}`, error: null };
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
  const code = errorCode(answer)?.slice(0, 64) ?? null;
  const description = typeof answer.error_description === 'string' ? `: ${answer.error_description.slice(0, 200)}` : '';
  const said = code ? `${code}${description}` : `HTTP ${response.status}`;
  if (response.status !== 200 && isGrantGone(response.status, code)) {
    return { ok: false, refused: true, reason: `the provider refused the refresh at ${where} (${said})`, error: code };
  }
  return { ok: false, refused: false, reason: `the token endpoint ${where} answered ${response.status} (${said})`, error: code };
}

/**
 * The error code of an error answer, in the shapes the CLIs read: OAuth's `{"error": "invalid_grant"}`,
 * Anthropic's `{"error": {"type": …}}` (Claude Code 2.1.330 reads `error.type`), OpenAI's
 * `{"error": {"code": …}}` or a top-level `code` (Codex 0.169.0 reads both).
 */
function errorCode(answer: JsonObject): string | null {
  const error = answer.error;
  if (typeof error === 'string') return error;
  if (isObject(error)) {
    if (typeof error.code === 'string') return error.code;
    if (typeof error.type === 'string') return error.type;
  }
  return typeof answer.code === 'string' ? answer.code : null;
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

/**
 * A stored file that does not validate (no refresh token, not JSON): nothing to send, and waiting
 * will not change it; only a new sign-in makes a usable one. `missing` is the validator's phrase.
 */
export function storedFileUnusable(missing: string): RefreshOutcome {
  return { ok: false, refused: true, reason: `the stored credential file cannot be refreshed (missing ${missing})` };
}

/** A 200 whose body lacks what the CLI needs (an access token, an expiry): odd, so try again later. */
export function oddAnswer(url: string, missing: string): RefreshOutcome {
  return { ok: false, refused: false, reason: `the token endpoint ${safePath(url)} answered without ${missing}` };
}

/** A failed exchange as a provider's outcome: refused or not, and the reason; the error code stays behind. */
export function refreshFailed(answer: Extract<RefreshAnswer, { ok: false }>): RefreshOutcome {
  return { ok: false, refused: answer.refused, reason: answer.reason };
}
