import { z } from 'zod';
import { AppError } from '../../protocol/errors.js';
import { runIdSchema } from '../../protocol/ids.js';
import { createRunBody, isTerminalRun, runEventsPage, runListResponse, runSchema, type Run } from '../../protocol/runs.js';
import { errorResponse } from '../../protocol/session.js';
import type { Store } from '../../store/store.js';
import type { RunManager } from '../runs/run-manager.js';
import type { EventFeed } from '../sessions/event-feed.js';
import { assertCanSee, ownerScope, type Principal } from './auth.js';
import { resumeAfter, streamEvents, wantsEventStream } from './event-stream.js';
import { defineRoute, type RouteDef } from './routes.js';

// Runs — the remote CLI (src/server/runs/run-manager.ts). Like credentials, an API key only: a run
// uses a person's grant. An app key starts runs on the sessions it created and sees its own runs.

export interface RunRouteDeps {
  store: Store;
  /** The all-in-one's and a node's RunManager, or a `porthole server`'s ClusterRuns. */
  runs: Pick<RunManager, 'create' | 'cancel'>;
  feed: EventFeed;
}

const common = { 400: errorResponse, 401: errorResponse, 403: errorResponse, 500: errorResponse, 503: errorResponse };
const runParams = z.object({ id: runIdSchema });
const runEventsQuery = z.object({
  after: z.coerce.number().int().min(0).default(0),
  limit: z.coerce.number().int().min(1).max(1000).default(500),
});
const runListQuery = z.object({ limit: z.coerce.number().int().min(1).max(500).default(50) });

/** The run, if this principal may see it: its own key's, or any for an admin. */
async function visibleRun(store: Store, principal: Principal | null, id: Run['id']): Promise<Run> {
  const run = await store.getRun(id);
  if (!run) throw new AppError('RUN_NOT_FOUND', { details: { runId: id } });
  const scope = ownerScope(principal);
  if (scope !== undefined && run.apiKeyId !== scope) throw new AppError('RUN_FORBIDDEN', { details: { runId: id } });
  return run;
}

export function runRoutes(deps: RunRouteDeps): RouteDef[] {
  return [
    defineRoute({
      method: 'POST',
      url: '/v1/runs',
      operationId: 'createRun',
      summary:
        'Run the provider’s CLI non-interactively with a stored credential, in a sandbox with no desktop (API key only): `args` after its run command (`claude -p`, `codex exec`, `gemini -p`, the demo CLI’s `run`), or `prompt`. Follow it at GET /v1/runs/:id/events. The credential’s secrets never appear in what a run returns.',
      auth: 'api-key',
      body: createRunBody,
      status: 201,
      responses: { 201: runSchema, ...common, 404: errorResponse, 409: errorResponse, 429: errorResponse },
      handler: async ({ body, principal }) => {
        const sessionId = (body.sessionId ?? body.credentialId)!;
        const session = await deps.store.getSession(sessionId);
        if (!session) throw new AppError('SESSION_NOT_FOUND', { details: { sessionId } });
        assertCanSee(principal, session);
        return deps.runs.create(body, principal?.kind === 'api-key' ? principal.keyId : null);
      },
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/runs',
      operationId: 'listRuns',
      summary: 'Runs, newest first. An app key lists only the runs it started.',
      auth: 'api-key',
      query: runListQuery,
      responses: { 200: runListResponse, ...common },
      handler: async ({ query, principal }) => ({ runs: await deps.store.listRuns({ apiKeyId: ownerScope(principal), limit: query.limit }) }),
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/runs/:id',
      operationId: 'getRun',
      summary: 'A run: its state, exit code and, once over, why.',
      auth: 'api-key',
      params: runParams,
      responses: { 200: runSchema, ...common, 404: errorResponse },
      handler: async ({ params, principal }) => visibleRun(deps.store, principal, params.id),
    }),
    defineRoute({
      method: 'DELETE',
      url: '/v1/runs/:id',
      operationId: 'cancelRun',
      summary: 'Stops a run: its CLI is killed with its sandbox, and the run is `failed` with RUN_CANCELED. A run that is over is returned as it is.',
      auth: 'api-key',
      params: runParams,
      responses: { 200: runSchema, ...common, 404: errorResponse, 409: errorResponse },
      handler: async ({ params, principal }) => {
        await visibleRun(deps.store, principal, params.id);
        return deps.runs.cancel(params.id);
      },
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/runs/:id/events',
      operationId: 'listRunEvents',
      summary:
        'The run’s timeline and output (`run.output`: stream and data), in order, a page at a time. With `Accept: text/event-stream`, live (Server-Sent Events, `id` = seq, resumable with `Last-Event-ID`), ending with an `end` event once the run is over.',
      auth: 'api-key',
      params: runParams,
      query: runEventsQuery,
      eventStream: 'on-accept',
      responses: { 200: runEventsPage, ...common, 404: errorResponse },
      handler: async ({ params, query, principal, request, reply }) => {
        await visibleRun(deps.store, principal, params.id);
        if (wantsEventStream(request)) {
          return streamEvents(request, reply, {
            feed: deps.feed,
            after: resumeAfter(request, query.after) ?? 0,
            read: (afterSeq, limit) => deps.store.listRunEvents(params.id, { afterSeq, limit }),
            finished: async () => {
              const run = await deps.store.getRun(params.id);
              return run && !isTerminalRun(run.state) ? null : (run?.state ?? 'failed');
            },
          });
        }
        const rows = await deps.store.listRunEvents(params.id, { afterSeq: query.after, limit: query.limit + 1 });
        const events = rows.slice(0, query.limit);
        return { events, hasMore: rows.length > query.limit, nextAfter: events.at(-1)?.seq ?? query.after };
      },
    }),
  ];
}
