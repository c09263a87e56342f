import { createPublicKey, verify as verifySignature, type JsonWebKey } from 'node:crypto';
import { isNonEmptyString, isObject, parseCredentialJson, type JsonObject } from './credential-json.js';
import type { CredentialVerdict, VerifyContext } from './provider.js';

// The demo provider's `verify`: porthole runs the issuer itself, so it asks it rather than believing
// the file. The issuer is the one this server started (VerifyContext.demo), never one the file
// names. Each token is checked by the issuer — the access token at userinfo, both tokens at
// introspection (active, issued to the demo CLI, for the same subject), the ID token against the
// issuer's signing keys — and the account is what userinfo answers. A refresh grant would also prove
// the refresh token, but it rotates it, and the rotated-away token is the one porthole would store.

/** A refusal: `isRetryable` when the issuer could not be asked, not when it said no. */
class Unverified extends Error {
  constructor(
    readonly reason: string,
    readonly isRetryable = false,
  ) {
    super(reason);
  }
}

interface Metadata {
  readonly userinfo: string;
  readonly introspection: string;
  readonly jwks: string;
}

/** The issuer's answer as JSON; a 5xx or a network failure is retryable, other refusals are not. */
async function askIssuer(context: VerifyContext, url: string, init: RequestInit = {}): Promise<{ status: number; body: JsonObject }> {
  const response = await context.fetch(url, { ...init, redirect: 'error', signal: context.signal });
  const text = await response.text();
  if (response.status >= 500) throw new Unverified(`the demo provider answered ${response.status} at ${new URL(url).pathname}`, true);
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // A non-JSON answer is handled as an empty one below.
  }
  return { status: response.status, body: isObject(body) ? body : {} };
}

async function discover(context: VerifyContext, issuer: string): Promise<Metadata> {
  const { status, body } = await askIssuer(context, `${issuer}/.well-known/openid-configuration`);
  if (status !== 200 || body.issuer !== issuer) throw new Unverified('the demo provider’s discovery document does not name this issuer', true);
  const endpoint = (name: string): string => {
    const value = body[name];
    // Its own endpoints only: the tokens are never sent anywhere but the issuer this server runs.
    if (!isNonEmptyString(value) || new URL(value).origin !== new URL(issuer).origin)
      throw new Unverified(`the demo provider advertises no ${name} of its own`, true);
    return value;
  };
  return { userinfo: endpoint('userinfo_endpoint'), introspection: endpoint('introspection_endpoint'), jwks: endpoint('jwks_uri') };
}

/** Introspection (RFC 7662) as the demo CLI's public client: the issuer says whether the token is live, and whose. */
async function introspect(
  context: VerifyContext,
  metadata: Metadata,
  clientId: string,
  token: string,
  hint: 'access_token' | 'refresh_token',
): Promise<JsonObject> {
  const { status, body } = await askIssuer(context, metadata.introspection, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token, token_type_hint: hint, client_id: clientId }).toString(),
  });
  const what = hint === 'access_token' ? 'access token' : 'refresh token';
  if (status !== 200) throw new Unverified(`the demo provider could not introspect the ${what} (${status})`);
  if (body.active !== true) throw new Unverified(`the demo provider does not know the ${what}, or it is no longer valid`);
  if (body.client_id !== clientId) throw new Unverified(`the ${what} was issued to another client`);
  // oidc-provider names the token type of access tokens only: one token cannot pass as the other.
  const isAccessToken = typeof body.token_type === 'string' && body.token_type.toLowerCase() === 'bearer';
  if (isAccessToken !== (hint === 'access_token')) throw new Unverified(`the ${what} is another kind of token`);
  return body;
}

/** RS256 (what the demo provider signs with) against the issuer's published keys; then issuer, audience and subject. */
async function checkIdToken(
  context: VerifyContext,
  metadata: Metadata,
  expected: { issuer: string; clientId: string; sub: string },
  idToken: string,
): Promise<void> {
  const [headerPart = '', payloadPart = '', signaturePart = ''] = idToken.split('.');
  const decode = (part: string): JsonObject => {
    try {
      const value: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
      return isObject(value) ? value : {};
    } catch {
      return {};
    }
  };
  const header = decode(headerPart);
  const claims = decode(payloadPart);
  if (idToken.split('.').length !== 3 || header.alg !== 'RS256' || !signaturePart) throw new Unverified('the ID token is not a JWT signed with RS256');
  const { status, body } = await askIssuer(context, metadata.jwks);
  const keys = status === 200 && Array.isArray(body.keys) ? body.keys.filter(isObject) : [];
  const jwk = keys.find((key) => key.kid === header.kid && key.kty === 'RSA');
  if (!jwk) throw new Unverified('the ID token was not signed by one of the demo provider’s keys');
  let isSigned = false;
  try {
    const key = createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
    isSigned = verifySignature('sha256', Buffer.from(`${headerPart}.${payloadPart}`), key, Buffer.from(signaturePart, 'base64url'));
  } catch {
    isSigned = false;
  }
  if (!isSigned) throw new Unverified('the ID token’s signature does not verify with the demo provider’s key');
  // No expiry check: the CLI checked that on receipt; here the ID token only has to be genuine and
  // about the same subject, whose tokens the checks above found live.
  const audience = claims.aud;
  if (claims.iss !== expected.issuer) throw new Unverified('the ID token names another issuer');
  if (audience !== expected.clientId && !(Array.isArray(audience) && audience.includes(expected.clientId)))
    throw new Unverified('the ID token was issued to another client');
  if (claims.sub !== expected.sub) throw new Unverified('the ID token is about another subject than the access token');
}

export async function verifyDemoCredentials(content: string, context: VerifyContext): Promise<CredentialVerdict> {
  try {
    const demo = context.demo;
    if (!demo) throw new Unverified('the demo provider is switched off on this server');
    const issuer = demo.issuer.replace(/\/+$/, '');
    const parsed = parseCredentialJson(content);
    if (!parsed.ok) throw new Unverified('the file is not a JSON object');
    const file = parsed.value;
    if (!isNonEmptyString(file.issuer) || file.issuer.replace(/\/+$/, '') !== issuer)
      throw new Unverified('the file names another issuer than this server’s demo provider');
    if (file.client_id !== demo.clientId) throw new Unverified('the file names another client than the demo CLI');
    const { access_token: accessToken, refresh_token: refreshToken, id_token: idToken } = file;
    if (!isNonEmptyString(accessToken) || !isNonEmptyString(refreshToken) || !isNonEmptyString(idToken))
      throw new Unverified('the file lacks an access, refresh or ID token');

    const metadata = await discover(context, issuer);
    const userinfo = await askIssuer(context, metadata.userinfo, { headers: { authorization: `Bearer ${accessToken}` } });
    if (userinfo.status !== 200 || !isNonEmptyString(userinfo.body.sub))
      throw new Unverified(`the demo provider refused the access token at userinfo (${userinfo.status})`);
    const sub = userinfo.body.sub;
    const access = await introspect(context, metadata, demo.clientId, accessToken, 'access_token');
    const refresh = await introspect(context, metadata, demo.clientId, refreshToken, 'refresh_token');
    if (access.sub !== sub || refresh.sub !== sub) throw new Unverified('the tokens belong to different subjects');
    await checkIdToken(context, metadata, { issuer, clientId: demo.clientId, sub }, idToken);

    const email = userinfo.body.email;
    const exp = access.exp;
    return {
      ok: true,
      verification: 'verified',
      // The issuer's word, never the file's `account`.
      account: isNonEmptyString(email) ? email : sub,
      expiresAt: typeof exp === 'number' && Number.isFinite(exp) ? new Date(exp * 1000).toISOString() : null,
    };
  } catch (error) {
    if (error instanceof Unverified) return { ok: false, reason: error.reason, isRetryable: error.isRetryable };
    // fetch failed or the deadline passed: the issuer could not be asked.
    // fetch's own message is "fetch failed"; its cause says why (ECONNREFUSED, …).
    const cause = (error as { cause?: { code?: unknown; message?: unknown } }).cause;
    const why = context.signal.aborted
      ? 'timed out'
      : typeof cause?.code === 'string'
        ? cause.code
        : typeof cause?.message === 'string'
          ? cause.message
          : error instanceof Error
            ? error.message
            : String(error);
    return { ok: false, reason: `the demo provider could not be asked (${why})`, isRetryable: true };
  }
}
