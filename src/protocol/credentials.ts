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

/** POST /v1/keys/rotate. */
export const keyRotationResponse = z.object({
  /** The master key every stored credential is now sealed with. */
  keyId: z.string(),
  /** How many stored credentials were re-encrypted under it. */
  reencrypted: z.number().int(),
});
export type KeyRotationResponse = z.infer<typeof keyRotationResponse>;
