import { z } from 'zod';
import { runIdSchema, sessionIdSchema } from './ids.js';
import { providerNames } from './session-states.js';

// Runs — the remote CLI: a provider's CLI run non-interactively with a stored credential, in a
// sandbox with no desktop, its output streamed and kept. A run is a record with a timeline, an exit
// code and a log, like a session.

/** starting → running → succeeded | failed | timed_out. Persisted: the strings must not drift. */
export const runStates = ['starting', 'running', 'succeeded', 'failed', 'timed_out'] as const;
export type RunState = (typeof runStates)[number];
export const terminalRunStates: readonly RunState[] = ['succeeded', 'failed', 'timed_out'];
export const isTerminalRun = (state: RunState): boolean => terminalRunStates.includes(state);

/** The default and the most a run may take. */
export const defaultRunTimeoutMs = 10 * 60_000;
export const maxRunTimeoutMs = 60 * 60_000;

export const runSchema = z.object({
  id: runIdSchema,
  /** The session whose credential the run uses. */
  sessionId: sessionIdSchema,
  provider: z.enum(providerNames),
  /** The API key that started it; null for the dashboard. */
  apiKeyId: z.string().nullable(),
  state: z.enum(runStates),
  /** The CLI's arguments after its run command (for claude: the prompt after -p). */
  args: z.array(z.string()),
  timeoutMs: z.number().int(),
  /** The CLI's exit code, once it exited. */
  exitCode: z.number().int().nullable(),
  /** For failed and timed_out: an error code (docs/errors.md) or `exit_code`. */
  reason: z.string().nullable(),
  detail: z.string().nullable(),
  createdAt: z.string(),
  finishedAt: z.string().nullable(),
});
export type Run = z.infer<typeof runSchema>;

/** POST /v1/runs. `credentialId` is the id of the session the credential was captured in (a credential is named by its session). */
export const createRunBody = z
  .object({
    sessionId: sessionIdSchema.optional(),
    credentialId: sessionIdSchema.optional(),
    /** The CLI's arguments after its run command; or `prompt`, as one argument. */
    args: z
      .array(z.string().max(64 * 1024))
      .max(256)
      .optional(),
    prompt: z
      .string()
      .min(1)
      .max(64 * 1024)
      .optional(),
    /** Files put in the run's working directory: relative path → UTF-8 content (1 MiB in all). */
    files: z.record(z.string().min(1).max(255), z.string()).optional(),
    timeoutMs: z.number().int().min(1000).max(maxRunTimeoutMs).default(defaultRunTimeoutMs),
  })
  .strict()
  .refine((b) => (b.sessionId === undefined) !== (b.credentialId === undefined), 'name the credential: sessionId or credentialId, one of them')
  .refine((b) => (b.args === undefined) !== (b.prompt === undefined), 'give args or prompt, one of them');
export type CreateRunBody = z.infer<typeof createRunBody>;

export const runEventTypes = [
  'run.created',
  /** The sandbox step: started, with its duration. */
  'run.sandbox',
  /** The CLI started (details: argv without the credential). */
  'run.started',
  /** Output: `stream` and `data` (secrets of the credential replaced by [redacted]). */
  'run.output',
  /** The CLI exited (details: code, signal, timedOut). */
  'run.exited',
  /** The CLI refreshed the grant itself: the new credential file is stored (details: expiresAt). */
  'run.credential_captured',
  'run.failed',
  /** Its sandbox is gone. */
  'run.finished',
  /** Egress through porthole's proxy, as on a session's timeline. */
  'egress.connect',
  'egress.request',
] as const;
export type RunEventType = (typeof runEventTypes)[number];

export const runEventSchema = z.object({
  seq: z.number().int(),
  runId: runIdSchema,
  type: z.enum(runEventTypes),
  /** For run.output. */
  stream: z.enum(['stdout', 'stderr']).nullable(),
  data: z.string().nullable(),
  details: z.record(z.string(), z.unknown()),
  at: z.string(),
});
export type RunEvent = z.infer<typeof runEventSchema>;

export const runEventsPage = z.object({ events: z.array(runEventSchema), hasMore: z.boolean(), nextAfter: z.number().int() });
export const runListResponse = z.object({ runs: z.array(runSchema) });
