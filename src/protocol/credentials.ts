import { z } from 'zod';

// What the API says about captured credentials. The summary rides on every session (the dashboard
// shows "Connected as …"); the content only ever leaves through GET /v1/sessions/:id/credentials.

/** A session's captured credential without its content. */
export const credentialSummarySchema = z.object({
  provider: z.string(),
  /** Who signed in (e-mail or subject), when the credential file says. */
  account: z.string().nullable(),
  capturedAt: z.string(),
  /** When the access token expires, when the credential file says. */
  expiresAt: z.string().nullable(),
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
