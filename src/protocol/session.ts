import { z } from 'zod';
import { credentialSummarySchema } from './credentials.js';
import { errorCodes } from './errors.js';
import { sandboxIdSchema, sessionIdSchema } from './ids.js';
import { eventTypes, sessionStates } from './session-states.js';

export * from './session-states.js';

export const sessionSchema = z.object({
  id: sessionIdSchema,
  state: z.enum(sessionStates),
  provider: z.string().nullable(),
  userId: z.string().nullable(),
  /** The API key that created it (`env` for PORTHOLE_API_KEY); null for the dashboard. */
  apiKeyId: z.string().nullable(),
  /** For terminal states: why (an end reason, or an error code for `failed`). */
  reason: z.string().nullable(),
  /** For `failed`: the human sentence naming the hop and cause. */
  detail: z.string().nullable(),
  sandboxId: sandboxIdSchema.nullable(),
  /** The porthole node (host) that runs its sandbox and that node's generation then; null before it is placed. */
  node: z.object({ id: z.string(), generation: z.number().int() }).nullable(),
  version: z.number().int(),
  createdAt: z.string(),
  updatedAt: z.string(),
  /** The captured credential's summary (never its content); null until one is stored. */
  credential: credentialSummarySchema.nullable(),
});
export type Session = z.infer<typeof sessionSchema>;

export const sessionEventSchema = z.object({
  seq: z.number().int(),
  sessionId: sessionIdSchema,
  type: z.enum(eventTypes),
  from: z.enum(sessionStates).nullable(),
  to: z.enum(sessionStates).nullable(),
  reason: z.string().nullable(),
  details: z.record(z.string(), z.unknown()),
  at: z.string(),
});
export type SessionEvent = z.infer<typeof sessionEventSchema>;

// ---- API bodies ----

export const createSessionBody = z
  .object({
    /** One of providerNames; checked by the server so an unknown name gets PROVIDER_UNKNOWN with the list. */
    provider: z.string().min(1).max(64).optional(),
    userId: z.string().min(1).max(200).optional(),
  })
  .strict();
export type CreateSessionBody = z.infer<typeof createSessionBody>;

export const ticketResponse = z.object({
  ticket: z.string(),
  viewerUrl: z.string(),
  expiresAt: z.string(),
});
export type TicketResponse = z.infer<typeof ticketResponse>;

export const sessionListResponse = z.object({ sessions: z.array(sessionSchema) });
/** GET /v1/sessions/:id/events?after=&limit=: one page of the timeline. */
export const maxEventsPage = 1000;
export const defaultEventsPage = 200;
export const sessionEventsResponse = z.object({
  events: z.array(sessionEventSchema),
  /** More events follow this page: ask again with `after=nextAfter`. */
  hasMore: z.boolean(),
  /** The `after` of the next request: this page's last seq, or the `after` asked for when the page is empty. */
  nextAfter: z.number().int(),
});
export type SessionEventsPage = z.infer<typeof sessionEventsResponse>;

export const errorResponse = z.object({
  error: z.object({
    code: z.enum(errorCodes as [string, ...string[]]),
    message: z.string(),
    requestId: z.string().optional(),
    details: z.record(z.string(), z.unknown()).optional(),
  }),
});
