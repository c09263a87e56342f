import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { sessionDiagnosisSchema } from '../../protocol/diagnosis.js';
import { AppError } from '../../protocol/errors.js';
import { sessionIdPattern, type SessionId } from '../../protocol/ids.js';
import {
  createSessionBody,
  defaultEventsPage,
  errorResponse,
  maxEventsPage,
  providerNames,
  sessionEventsResponse,
  sessionListResponse,
  sessionSchema,
  sessionStates,
  ticketResponse,
} from '../../protocol/session.js';
import { version } from '../../protocol/version.js';
import type { Store } from '../../store/store.js';
import { serverUrlOf, type DiagnoseSession } from '../sessions/diagnosis.js';
import type { SessionManager } from '../sessions/session-manager.js';
import type { TicketSigner } from '../tickets.js';
import type { Principal } from './auth.js';
import type { TrustedOrigins } from './origin.js';

// The API as one table: each route's schemas validate its input and, through openapi.ts, describe it.
// A test holds the OpenAPI document and the routes the server really registered in step.

/**
 * `agent`: the sandbox's own token, for the session named in the path (see authenticateAgent).
 * `api-key`: an API key only, not a dashboard login or a viewer ticket (routes that hand out secrets).
 */
export type RouteAuth = 'none' | 'api' | 'api-or-viewer' | 'agent' | 'api-key';

export interface RouteContext {
  params: Record<string, string>;
  query: Record<string, unknown>;
  body: unknown;
  principal: Principal | null;
  request: FastifyRequest;
  reply: FastifyReply;
}

export interface RouteDef {
  method: 'GET' | 'POST' | 'DELETE';
  url: string;
  operationId: string;
  summary: string;
  auth: RouteAuth;
  params?: z.ZodObject;
  query?: z.ZodObject;
  body?: z.ZodType;
  status?: number;
  responses: Record<number, z.ZodType>;
  handler(context: RouteContext): Promise<unknown>;
}

export interface RouteDeps {
  sessions: SessionManager;
  store: Store;
  tickets: TicketSigner;
  ticketTtlMs: number;
  /** Its baseUrl is where links handed to clients point: PORTHOLE_PUBLIC_URL or the listening address, never the request's Host. */
  origins: Pick<TrustedOrigins, 'baseUrl'>;
  /** Per-hop diagnosis (createSessionDiagnosis). */
  diagnose: DiagnoseSession;
}

const idParams = z.object({ id: z.string().regex(sessionIdPattern, 'must be a session id (ses_…)') });
const listQuery = z.object({
  state: z.enum(sessionStates).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(100),
});
const eventsQuery = z.object({
  after: z.coerce.number().int().min(0).default(0),
  limit: z.coerce.number().int().min(1).max(maxEventsPage).default(defaultEventsPage),
});
const healthResponse = z.object({ ok: z.boolean(), version: z.string() });

const common = { 400: errorResponse, 401: errorResponse, 503: errorResponse };

export function apiRoutes(deps: RouteDeps): RouteDef[] {
  const idOf = (params: Record<string, string>) => params.id as SessionId;
  return [
    {
      method: 'GET',
      url: '/healthz',
      operationId: 'health',
      summary: 'Liveness of the server, with its version.',
      auth: 'none',
      responses: { 200: healthResponse },
      handler: async () => ({ ok: true, version }),
    },
    {
      method: 'POST',
      url: '/v1/sessions',
      operationId: 'createSession',
      summary: 'Start a session: a sandbox boots; watch its events until it is ready.',
      auth: 'api',
      body: createSessionBody,
      status: 201,
      responses: { 201: sessionSchema, ...common, 429: errorResponse },
      handler: async ({ body }) => {
        const input = body as z.infer<typeof createSessionBody>;
        if (input.provider !== undefined && !(providerNames as readonly string[]).includes(input.provider)) {
          throw new AppError('PROVIDER_UNKNOWN', { message: `No provider is named "${input.provider}"; known: ${providerNames.join(', ')}.`, details: { known: providerNames } });
        }
        return deps.sessions.create(input);
      },
    },
    {
      method: 'GET',
      url: '/v1/sessions',
      operationId: 'listSessions',
      summary: 'Sessions, newest first.',
      auth: 'api',
      query: listQuery,
      responses: { 200: sessionListResponse, ...common },
      handler: async ({ query }) => {
        const q = query as z.infer<typeof listQuery>;
        return { sessions: await deps.store.listSessions({ states: q.state ? [q.state] : undefined, limit: q.limit }) };
      },
    },
    {
      method: 'GET',
      url: '/v1/sessions/:id',
      operationId: 'getSession',
      summary: 'One session.',
      auth: 'api-or-viewer',
      params: idParams,
      responses: { 200: sessionSchema, ...common, 404: errorResponse },
      handler: async ({ params }) => deps.sessions.get(idOf(params)),
    },
    {
      method: 'DELETE',
      url: '/v1/sessions/:id',
      operationId: 'endSession',
      summary: 'End a session (reason "user"); its viewers close and its sandbox is destroyed. Idempotent.',
      auth: 'api-or-viewer',
      params: idParams,
      responses: { 200: sessionSchema, ...common, 404: errorResponse },
      handler: async ({ params }) => deps.sessions.end(idOf(params), 'user', 'Ended on request.'),
    },
    {
      method: 'GET',
      url: '/v1/sessions/:id/events',
      operationId: 'listSessionEvents',
      summary: `The session’s timeline: transitions and start-up steps, in order, one page at a time (\`after\` a seq, \`limit\` ${defaultEventsPage} by default, at most ${maxEventsPage}); \`hasMore\` says whether to ask again with \`after=nextAfter\`.`,
      auth: 'api-or-viewer',
      params: idParams,
      query: eventsQuery,
      responses: { 200: sessionEventsResponse, ...common, 404: errorResponse },
      handler: async ({ params, query }) => {
        const session = await deps.sessions.get(idOf(params));
        const { after, limit } = query as z.infer<typeof eventsQuery>;
        // One more than the page: whether it came back says if more follow, without a count.
        const rows = await deps.store.listEvents(session.id as SessionId, { afterSeq: after, limit: limit + 1 });
        const events = rows.slice(0, limit);
        return { events, hasMore: rows.length > limit, nextAfter: events.at(-1)?.seq ?? after };
      },
    },
    {
      method: 'POST',
      url: '/v1/sessions/:id/ticket',
      operationId: 'createViewerTicket',
      summary: 'A short-lived viewer ticket and the viewer URL that carries it. A viewer renews its own ticket here, within its chain’s maximum age.',
      auth: 'api-or-viewer',
      params: idParams,
      status: 201,
      responses: { 201: ticketResponse, ...common, 403: errorResponse, 404: errorResponse },
      handler: async ({ params, principal }) => {
        const session = await deps.sessions.get(idOf(params));
        const id = session.id as SessionId;
        // A viewer renews within its chain (capped); an API key or the dashboard starts a new one.
        const { ticket, expiresAt } = principal?.kind === 'viewer' ? deps.tickets.renew(id, principal.chainStartedAt) : deps.tickets.issue(id);
        const viewerUrl = `${deps.origins.baseUrl}/v1/sessions/${session.id}/viewer?ticket=${encodeURIComponent(ticket)}`;
        return { ticket, viewerUrl, expiresAt: expiresAt.toISOString() };
      },
    },
    {
      method: 'GET',
      url: '/v1/sessions/:id/diagnosis',
      operationId: 'diagnoseSession',
      summary: 'Walks the hops to the session’s desktop in order (store, driver, agent, vnc, relay): each one’s result, duration and cause, and the first failure.',
      auth: 'api-or-viewer',
      params: idParams,
      responses: { 200: sessionDiagnosisSchema, ...common, 403: errorResponse, 404: errorResponse },
      handler: async ({ params, request }) => {
        // The relay hop dials the listener this request arrived on: the server itself, not a proxy in front.
        return deps.diagnose(idOf(params), { serverUrl: serverUrlOf(request.socket) });
      },
    },
  ];
}
