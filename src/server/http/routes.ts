import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { sessionDiagnosisSchema } from '../../protocol/diagnosis.js';
import { AppError } from '../../protocol/errors.js';
import { sessionIdSchema, type SessionId } from '../../protocol/ids.js';
import {
  createSessionBody,
  defaultEventsPage,
  errorResponse,
  maxEventsPage,
  providerNames,
  isTerminal,
  sessionEventSchema,
  sessionEventsResponse,
  sessionListResponse,
  sessionSchema,
  sessionStates,
  ticketResponse,
} from '../../protocol/session.js';
import { version } from '../../protocol/version.js';
import type { Store } from '../../store/store.js';
import { serverUrlOf, type DiagnoseSession } from '../sessions/diagnosis.js';
import type { SessionService } from '../sessions/session-manager.js';
import { readinessResponse, type Readiness } from '../../protocol/nodes.js';
import type { TicketSigner } from '../tickets.js';
import { ownerScope, type Principal } from './auth.js';
import { resumeAfter, streamEvents, wantsEventStream, type Streamed } from './event-stream.js';
import type { EventFeed } from '../sessions/event-feed.js';
import type { TrustedOrigins } from './origin.js';

// The API as one table: each route's schemas validate its input and, through openapi.ts, describe it.
// A test holds the OpenAPI document and the routes the server really registered in step, and
// another (route-responses) holds every response to the schema its route declares for its status.

/**
 * `agent`: the sandbox's own token, for the session named in the path (see authenticateAgent).
 * `api-key`: an API key only, not a dashboard login or a viewer ticket (routes that hand out secrets).
 * `admin`: an admin API key or the dashboard (managing keys). An app key on any route about one
 * session gets SESSION_FORBIDDEN for a session it did not create (app.ts checks, before the handler).
 */
export type RouteAuth = 'none' | 'api' | 'api-or-viewer' | 'agent' | 'api-key' | 'admin';
/** The auths that are about the session in the path: such a route's params parse `:id` as a SessionId. */
type SessionAuth = 'api-or-viewer' | 'agent';

/** A route's responses: the schema of each status it may answer with. */
export type RouteResponses = Record<number, z.ZodType>;
type SuccessStatus = 200 | 201 | 202 | 204;
/** What a handler returns: a body one of its 2xx schemas accepts. Errors are thrown (AppError), never returned. */
export type SuccessBody<R extends RouteResponses> = { [S in keyof R & SuccessStatus]: z.input<R[S]> }[keyof R & SuccessStatus];
/** What a params or query schema hands the handler once app.ts has parsed the request with it; nothing without one. */
type Parsed<S extends z.ZodType | undefined> = S extends z.ZodType ? z.output<S> : Record<never, never>;

export interface RouteContext<Params = Record<string, unknown>, Query = Record<string, unknown>, Body = unknown> {
  params: Params;
  query: Query;
  body: Body;
  principal: Principal | null;
  request: FastifyRequest;
  reply: FastifyReply;
}

interface RouteFields<P, Q, B, R> {
  method: 'GET' | 'POST' | 'DELETE';
  url: string;
  operationId: string;
  summary: string;
  params?: P;
  query?: Q;
  body?: B;
  /** The one success status, when the handler does not choose (it may, with reply.status, among its documented ones). */
  status?: number;
  /**
   * Answers as Server-Sent Events (each `data:` one of its 200 schema's items, see event-stream.ts):
   * `only`, or `on-accept` when the request asks for `text/event-stream` (else JSON).
   */
  eventStream?: 'only' | 'on-accept';
  responses: R;
}

/**
 * One route as its author writes it: the schemas type the handler. Its context holds what the
 * params, query and body schemas output (a SessionId, not a string), and it must return what one
 * of its 2xx response schemas accepts. A route whose auth is about the session in the path must
 * parse `:id` as one.
 */
export interface RouteSpec<P extends z.ZodObject | undefined, Q extends z.ZodObject | undefined, B extends z.ZodType | undefined, R extends RouteResponses>
  extends RouteFields<P, Q, B, R> {
  auth: Parsed<P> extends { id: SessionId } ? RouteAuth : Exclude<RouteAuth, SessionAuth>;
  handler(context: RouteContext<Parsed<P>, Parsed<Q>, B extends z.ZodType ? z.output<B> : undefined>): Promise<SuccessBody<NoInfer<R>> | Streamed>;
}

/** The route table's entry as app.ts and openapi.ts read it: the same route, its types erased to its schemas. */
export interface RouteDef extends RouteFields<z.ZodObject | undefined, z.ZodObject | undefined, z.ZodType | undefined, RouteResponses> {
  auth: RouteAuth;
  handler(context: RouteContext): Promise<unknown>;
}

/**
 * Types a route by its schemas (see RouteSpec). Sound because app.ts calls the handler only with
 * the request parsed by these very schemas; a test holds the responses to them.
 */
export function defineRoute<
  P extends z.ZodObject | undefined = undefined,
  Q extends z.ZodObject | undefined = undefined,
  B extends z.ZodType | undefined = undefined,
  R extends RouteResponses = RouteResponses,
>(spec: RouteSpec<P, Q, B, R>): RouteDef {
  return spec;
}

export interface RouteDeps {
  /** GET /readyz: throws (STORE_UNAVAILABLE, NODE_FENCED) when not ready. */
  readiness(): Promise<Readiness>;
  sessions: SessionService;
  store: Store;
  tickets: TicketSigner;
  ticketTtlMs: number;
  /** Its baseUrl is where links handed to clients point: PORTHOLE_PUBLIC_URL or the listening address, never the request's Host. */
  origins: Pick<TrustedOrigins, 'baseUrl'>;
  /** Per-hop diagnosis (createSessionDiagnosis). */
  diagnose: DiagnoseSession;
  /** Wakes event streams when this server writes an event. */
  feed: EventFeed;
}

/** The params of every route under /v1/…/sessions/:id: the id parsed as a SessionId. */
export const sessionParams = z.object({ id: sessionIdSchema });
const listQuery = z.object({
  state: z.enum(sessionStates).optional(),
  userId: z.string().min(1).max(200).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(100),
});
const eventsQuery = z.object({
  after: z.coerce.number().int().min(0).default(0),
  limit: z.coerce.number().int().min(1).max(maxEventsPage).default(defaultEventsPage),
});
const firehoseQuery = z.object({ after: z.coerce.number().int().min(0).optional() });
const healthResponse = z.object({ ok: z.boolean(), version: z.string() });

// 403: an app key on another key's session (SESSION_FORBIDDEN), a ticket for another session.
const common = { 400: errorResponse, 401: errorResponse, 403: errorResponse, 503: errorResponse };

export function apiRoutes(deps: RouteDeps): RouteDef[] {
  return [
    defineRoute({
      method: 'GET',
      url: '/healthz',
      operationId: 'health',
      summary: 'Liveness of the server, with its version.',
      auth: 'none',
      responses: { 200: healthResponse },
      handler: async () => ({ ok: true, version }),
    }),
    defineRoute({
      method: 'GET',
      url: '/readyz',
      operationId: 'readiness',
      summary: 'Readiness: the catalog answers, and a node is registered, heartbeating and not fenced. 503 with the reason otherwise.',
      auth: 'none',
      responses: { 200: readinessResponse, 503: errorResponse },
      handler: async () => deps.readiness(),
    }),
    defineRoute({
      method: 'POST',
      url: '/v1/sessions',
      operationId: 'createSession',
      summary: 'Start a session: a sandbox boots; watch its events until it is ready.',
      auth: 'api',
      body: createSessionBody,
      status: 201,
      responses: { 201: sessionSchema, ...common, 429: errorResponse },
      handler: async ({ body, principal }) => {
        if (body.provider !== undefined && !(providerNames as readonly string[]).includes(body.provider)) {
          throw new AppError('PROVIDER_UNKNOWN', {
            message: `No provider is named "${body.provider}"; known: ${providerNames.join(', ')}.`,
            details: { known: providerNames },
          });
        }
        return deps.sessions.create(body, principal?.kind === 'api-key' ? principal.keyId : null);
      },
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/sessions',
      operationId: 'listSessions',
      summary: 'Sessions, newest first, by `state` and `userId`. An app key lists only the sessions it created.',
      auth: 'api',
      query: listQuery,
      responses: { 200: sessionListResponse, ...common },
      handler: async ({ query, principal }) => {
        const sessions = await deps.store.listSessions({
          states: query.state ? [query.state] : undefined,
          userId: query.userId,
          apiKeyId: ownerScope(principal),
          limit: query.limit,
        });
        return { sessions };
      },
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/sessions/:id',
      operationId: 'getSession',
      summary: 'One session.',
      auth: 'api-or-viewer',
      params: sessionParams,
      responses: { 200: sessionSchema, ...common, 404: errorResponse },
      handler: async ({ params }) => deps.sessions.get(params.id),
    }),
    defineRoute({
      method: 'DELETE',
      url: '/v1/sessions/:id',
      operationId: 'endSession',
      summary: 'End a session (reason "user"); its viewers close and its sandbox is destroyed. Idempotent.',
      auth: 'api-or-viewer',
      params: sessionParams,
      responses: { 200: sessionSchema, ...common, 404: errorResponse },
      handler: async ({ params }) => deps.sessions.end(params.id, 'user', 'Ended on request.'),
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/sessions/:id/events',
      operationId: 'listSessionEvents',
      summary: `The session’s timeline: transitions and start-up steps, in order, one page at a time (\`after\` a seq, \`limit\` ${defaultEventsPage} by default, at most ${maxEventsPage}); \`hasMore\` says whether to ask again with \`after=nextAfter\`. With \`Accept: text/event-stream\`, a live stream instead (Server-Sent Events, \`id\` = seq, resumable with \`Last-Event-ID\`) that ends with an \`end\` event once the session is over.`,
      auth: 'api-or-viewer',
      params: sessionParams,
      query: eventsQuery,
      eventStream: 'on-accept',
      responses: { 200: sessionEventsResponse, ...common, 404: errorResponse },
      handler: async ({ params, query, request, reply }) => {
        const { after, limit } = query;
        await deps.sessions.get(params.id); // SESSION_NOT_FOUND, not an empty page
        if (wantsEventStream(request)) {
          return streamEvents(request, reply, {
            feed: deps.feed,
            after: resumeAfter(request, after) ?? 0,
            read: (afterSeq, pageLimit) => deps.store.listEvents(params.id, { afterSeq, limit: pageLimit }),
            finished: async () => {
              const session = await deps.store.getSession(params.id);
              return session && !isTerminal(session.state) ? null : (session?.state ?? 'ended');
            },
          });
        }
        // One more than the page: whether it came back says if more follow, without a count.
        const rows = await deps.store.listEvents(params.id, { afterSeq: after, limit: limit + 1 });
        const events = rows.slice(0, limit);
        return { events, hasMore: rows.length > limit, nextAfter: events.at(-1)?.seq ?? after };
      },
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/events',
      operationId: 'streamEvents',
      summary:
        'Every event of the sessions this key created (an admin key or the dashboard: of all sessions), live, as Server-Sent Events in seq order. Starts now, or after `Last-Event-ID` / `after`; never ends by itself.',
      auth: 'api',
      query: firehoseQuery,
      eventStream: 'only',
      responses: { 200: sessionEventSchema, ...common, 406: errorResponse },
      handler: async ({ query, principal, request, reply }) => {
        // A stream that never ends is only for a client that asked for one (EventSource does).
        if (!wantsEventStream(request)) throw new AppError('NOT_ACCEPTABLE');
        const apiKeyId = ownerScope(principal);
        const after = resumeAfter(request, query.after) ?? (await deps.store.lastEventSeq());
        return streamEvents(request, reply, {
          feed: deps.feed,
          after,
          read: (afterSeq, limit) => deps.store.listAllEvents({ afterSeq, apiKeyId, limit }),
        });
      },
    }),
    defineRoute({
      method: 'POST',
      url: '/v1/sessions/:id/ticket',
      operationId: 'createViewerTicket',
      summary: 'A short-lived viewer ticket and the viewer URL that carries it. A viewer renews its own ticket here, within its chain’s maximum age.',
      auth: 'api-or-viewer',
      params: sessionParams,
      status: 201,
      responses: { 201: ticketResponse, ...common, 403: errorResponse, 404: errorResponse },
      handler: async ({ params, principal }) => {
        const id = params.id;
        const session = await deps.sessions.get(id); // SESSION_NOT_FOUND, not a ticket to nothing
        // A viewer renews within its chain (capped); an API key or the dashboard starts a new one.
        const { ticket, expiresAt } =
          principal?.kind === 'viewer' ? deps.tickets.renew(id, principal.chainStartedAt, session.node) : deps.tickets.issue(id, session.node);
        const viewerUrl = `${deps.origins.baseUrl}/v1/sessions/${id}/viewer?ticket=${encodeURIComponent(ticket)}`;
        return { ticket, viewerUrl, expiresAt: expiresAt.toISOString() };
      },
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/sessions/:id/diagnosis',
      operationId: 'diagnoseSession',
      summary:
        'Walks the hops to the session’s desktop in order (store, node, driver, agent, vnc, relay): each one’s result, duration and cause, and the first failure.',
      auth: 'api-or-viewer',
      params: sessionParams,
      responses: { 200: sessionDiagnosisSchema, ...common, 403: errorResponse, 404: errorResponse },
      handler: async ({ params, request }) => {
        // The relay hop dials the listener this request arrived on: the server itself, not a proxy in front.
        return deps.diagnose(params.id, { serverUrl: serverUrlOf(request.socket) });
      },
    }),
  ];
}
