import { z } from 'zod';

// What the API says about captured credentials. The summary rides on every session (the dashboard
// shows "Connected as …"); the content only ever leaves through GET /v1/sessions/:id/credentials.

/**
 * How far the server could check a delivered credential before storing it. `verified`: the
 * provider itself accepted its tokens (the demo provider, which runs beside the server), and the
 * account is the provider's word. `offline-checks-only`: the real providers' servers are not asked
 * (no network to them here); the file's shape, token formats and the ID token's issuer were
 * checked, and the account is what the file claims. Persisted: the strings must not drift.
 */
export const credentialVerifications = ['verified', 'offline-checks-only'] as const;
export type CredentialVerification = (typeof credentialVerifications)[number];

/**
 * Where a stored grant stands. `active`: porthole keeps it fresh (it refreshes ahead of expiry).
 * `needs_login`: the provider refused the refresh (revoked, or its refresh token was used
 * elsewhere): only a new sign-in helps. Persisted: the strings must not drift.
 */
export const credentialStates = ['active', 'needs_login'] as const;
export type CredentialState = (typeof credentialStates)[number];

/** A session's captured credential without its content. */
export const credentialSummarySchema = z.object({
  provider: z.string(),
  /** Who signed in (e-mail or subject), when the credential file says. */
  account: z.string().nullable(),
  capturedAt: z.string(),
  /** When the access token expires, when the credential file says. */
  expiresAt: z.string().nullable(),
  /** Whether the provider confirmed the credential, or only porthole's offline checks passed. */
  verification: z.enum(credentialVerifications),
  /** Whether porthole keeps it fresh (`active`) or the person must sign in again (`needs_login`). */
  state: z.enum(credentialStates),
  /** When porthole last refreshed it; null before the first refresh. */
  refreshedAt: z.string().nullable(),
  /** Why the last refresh failed (the provider's error code and words, never a token); null when it did not. */
  refreshError: z.string().nullable(),
});
export type CredentialSummary = z.infer<typeof credentialSummarySchema>;

/** GET /v1/sessions/:id/credentials: the credential file itself. Every read is an audit event. */
export const credentialResponse = z.object({
  sessionId: z.string(),
  provider: z.string(),
  /** The credential file's content, as the CLI wrote it. */
  file: z.string(),
  capturedAt: z.string(),
  expiresAt: z.string().nullable(),
  account: z.string().nullable(),
  verification: z.enum(credentialVerifications),
});
export type CredentialResponse = z.infer<typeof credentialResponse>;

/**
 * GET /v1/sessions/:id/credentials/access-token: a fresh access token alone, for an app that calls
 * the provider's API itself. porthole refreshes first when the token is about to expire; the
 * refresh token never leaves porthole this way.
 */
export const accessTokenResponse = z.object({
  sessionId: z.string(),
  provider: z.string(),
  accessToken: z.string(),
  tokenType: z.string(),
  /** When it expires, when the provider says. */
  expiresAt: z.string().nullable(),
  account: z.string().nullable(),
});
export type AccessTokenResponse = z.infer<typeof accessTokenResponse>;

/** POST /v1/keys/rotate. */
export const keyRotationResponse = z.object({
  /** The master key every stored credential is now sealed with. */
  keyId: z.string(),
  /** How many stored credentials were re-encrypted under it. */
  reencrypted: z.number().int(),
});
export type KeyRotationResponse = z.infer<typeof keyRotationResponse>;
