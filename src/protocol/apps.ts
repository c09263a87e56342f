import { z } from 'zod';
import { sessionIdSchema } from './ids.js';

// What the API says about apps: their keys, the webhooks porthole sends them, and new dashboard
// login links. The signing of webhooks follows the Standard Webhooks spec (src/server/webhooks/).

/** The session events that are also sent as webhooks. `session.ready` only the first time (from starting). */
export const webhookEventTypes = ['session.ready', 'session.completed', 'session.failed', 'session.ended', 'credential.needs_login'] as const;
export type WebhookEventType = (typeof webhookEventTypes)[number];

export const createKeyBody = z
  .object({
    name: z.string().min(1).max(100),
    /** Sees every session and manages keys; an app key (the default) sees only the sessions it created. */
    admin: z.boolean().default(false),
    /** Where this key's sessions' webhooks go (http or https). */
    webhookUrl: z
      .url({ protocol: /^https?$/, error: 'must be an http(s) URL' })
      .max(2000)
      .optional(),
  })
  .strict();

export const keyIdParams = z.object({ keyId: z.string().regex(/^key_[0-9a-f]{12}$/, 'must be a key id (key_…)') });

export const apiKeySchema = z.object({
  id: z.string(),
  name: z.string(),
  admin: z.boolean(),
  webhookUrl: z.string().nullable(),
  createdAt: z.string(),
  revokedAt: z.string().nullable(),
});
export type ApiKey = z.infer<typeof apiKeySchema>;

/** POST /v1/keys: the key and its webhook secret, shown this once (porthole keeps a hash and a sealed copy). */
export const createdKeySchema = apiKeySchema.extend({
  key: z.string(),
  /** `whsec_…`: verifies this key's webhooks (Standard Webhooks); null without a webhookUrl. */
  webhookSecret: z.string().nullable(),
});
export const keyListResponse = z.object({ keys: z.array(apiKeySchema) });

export const deliveryStates = ['pending', 'delivered', 'failed'] as const;
export const webhookDeliverySchema = z.object({
  /** The `webhook-id` header: the same on every retry. */
  id: z.string(),
  sessionId: sessionIdSchema,
  type: z.string(),
  url: z.string(),
  state: z.enum(deliveryStates),
  attempts: z.number().int(),
  /** The receiver's HTTP status on the last attempt; null when it could not be reached. */
  lastStatus: z.number().int().nullable(),
  /** Why the last attempt failed. */
  lastError: z.string().nullable(),
  nextAttemptAt: z.string().nullable(),
  createdAt: z.string(),
  deliveredAt: z.string().nullable(),
});
export type WebhookDeliveryView = z.infer<typeof webhookDeliverySchema>;
export const deliveryListResponse = z.object({ deliveries: z.array(webhookDeliverySchema) });

/** The body of every webhook (Standard Webhooks' recommended shape). */
export interface WebhookPayload<Session = unknown> {
  type: WebhookEventType;
  /** ISO time of the event. */
  timestamp: string;
  data: { session: Session; eventSeq: number };
}

/** How long a login link from `porthole login-link` or POST /v1/login-links may wait to be opened. */
export const loginLinkTtlMs = 10 * 60_000;

/** POST /v1/login-links: a one-time dashboard login link. */
export const loginLinkResponse = z.object({ url: z.string(), expiresAt: z.string() });
