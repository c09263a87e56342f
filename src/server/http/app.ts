import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import Fastify, { LogController, type FastifyError, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { z } from 'zod';
import { AppError, errorRegistry, type ErrorCode } from '../../protocol/errors.js';
import { isSessionId } from '../../protocol/ids.js';
import { answerClientError, answerExpectation } from './client-errors.js';
import { assertCanSee, authenticateAgent, createAuthenticator, isAdmin, loginCookie, ownerScope, readCookie, sameSecret, type Principal } from './auth.js';
import { openApiDocument } from './openapi.js';
import { streamed } from './event-stream.js';
import { keyRoutes, type KeyRouteDeps } from './key-routes.js';
import { agentRoutes } from './agent-routes.js';
import { credentialRoutes, type CredentialRouteDeps } from './credential-routes.js';
import { runRoutes, type RunRouteDeps } from './run-routes.js';
import { apiRoutes, type RouteDeps } from './routes.js';
import { nodeRoutes } from './node-routes.js';
import { registerInternalRoutes, type InternalRouteDeps } from './internal-routes.js';
import { isOriginAllowed, type TrustedOrigins } from './origin.js';
import type { Store } from '../../store/store.js';
import type { Secret } from '../secret.js';
import type { TicketSigner } from '../tickets.js';
import type { Metrics } from '../metrics.js';

export interface AppOptions extends RouteDeps, CredentialRouteDeps, KeyRouteDeps, RunRouteDeps {
  logger: Logger;
  store: Store;
  apiKey: Secret | null;
  tickets: TicketSigner;
  /** Who may act from a browser page, who may frame the viewer, and where links point. */
  origins: TrustedOrigins;
  bodyLimitBytes: number;
  /** One-time dashboard login token (Jupyter-style); consumed by GET /login. */
  loginToken: Secret;
  metrics: Metrics;
  /** A node's internal routes (servers → node, signed with the cluster key); none elsewhere. */
  internal?: InternalRouteDeps;
}

const viewerDir = fileURLToPath(new URL('../../../viewer/', import.meta.url));
// No source maps (.map): the browser bundles are served as built, without their sources.
const assetExtensions = new Set(['.js', '.css', '.svg']);
/** A fingerprinted asset never changes under its URL. */
const assetMaxAgeMs = 365 * 24 * 3600_000;

/** The build's fingerprints of the viewer's assets; none (every asset revalidated) when the file is missing. */
async function readAssetVersions(): Promise<Record<string, string>> {
  const text = await readFile(join(viewerDir, 'asset-versions.json'), 'utf8').catch(() => '{}');
  return JSON.parse(text) as Record<string, string>;
}

const pageCsp =
  "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'";
/**
 * Headers of porthole's HTML pages. Who may frame them: the viewer is made to be embedded, by
 * porthole's own pages and PORTHOLE_ALLOWED_ORIGINS; the dashboard (and the login link) by porthole
 * alone, so no other site can overlay it and lure clicks (clickjacking). X-Frame-Options is for
 * browsers without CSP frame-ancestors; they get DENY, since porthole itself frames neither.
 */
function pageHeaders(embedders: readonly string[] | null): Record<string, string> {
  const ancestors = ["'self'", ...(embedders ?? [])].join(' ');
  return {
    'cache-control': 'no-store',
    // The viewer URL carries a ticket: never leak it through Referer.
    'referrer-policy': 'no-referrer',
    'x-content-type-options': 'nosniff',
    'content-security-policy': `${pageCsp}; frame-ancestors ${ancestors}`,
    ...(embedders === null ? { 'x-frame-options': 'DENY' } : {}),
  };
}
const escapeHtml = (text: string) => text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');

/** The dashboard's login form: for a browser whose one-time link was used, or that never had one. */
function loginPage(message: string | null): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Log in — porthole</title><link rel="icon" href="/assets/favicon.svg" type="image/svg+xml"><link rel="stylesheet" href="/assets/porthole.css">
<style>.login-card{max-width:32rem;margin:12vh auto;padding:2rem;display:grid;gap:1rem}.login-card form{display:grid;gap:.6rem}.login-error{color:var(--danger,#b3261e);font-weight:600}</style></head>
<body><main class="login-card">
<h1>Log in to porthole</h1>
<p>Open a login link — <code>porthole start</code> prints one; <code>porthole login-link</code> prints a new one any time — or enter an admin API key.</p>
${message ? `<p class="login-error" role="alert">${escapeHtml(message)}</p>` : ''}
<form method="post" action="/login">
<label for="api-key">Admin API key</label>
<input id="api-key" name="apiKey" type="password" autocomplete="current-password" required spellcheck="false" autocapitalize="off">
<button class="primary" type="submit">Log in</button>
</form></main></body></html>`;
}

/** A stolen or forgotten dashboard cookie is good for half a day at most; POST /logout ends it sooner. */
const loginLifetimeMs = 12 * 3600 * 1000;

/**
 * One line per request, without the query string: viewer URLs carry a ticket, and tickets stay out
 * of logs. The request id is logged as `requestId`, like everywhere else.
 */
class RequestLog extends LogController {
  constructor() {
    super({ requestIdLogLabel: 'requestId' });
  }
  override incomingRequest(): void {}
  override requestCompleted(error: Error | null, request: FastifyRequest, reply: FastifyReply): void {
    const fields = { method: request.method, path: request.url.split('?')[0], status: reply.statusCode, ms: Math.round(reply.elapsedTime) };
    if (error) reply.log.warn({ ...fields, err: error }, 'request failed');
    else reply.log.info(fields, 'request');
  }
}

/** Maps what Fastify itself rejects (body parsing, limits) to registry codes. */
function codeOfFrameworkError(error: FastifyError): ErrorCode | null {
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return 'BODY_TOO_LARGE';
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return 'UNSUPPORTED_MEDIA_TYPE';
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return 'MALFORMED_JSON';
  }
  if (error instanceof SyntaxError) return 'MALFORMED_JSON';
  if (typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500) return 'VALIDATION_FAILED';
  return null;
}

export async function buildApp(options: AppOptions) {
  let nextId = 0;
  const prefix = randomBytes(3).toString('hex');
  const app = Fastify({
    loggerInstance: options.logger.child({ component: 'http' }),
    logController: new RequestLog(),
    genReqId: () => `${prefix}-${(++nextId).toString(36)}`,
    bodyLimit: options.bodyLimitBytes,
    routerOptions: { maxParamLength: 200 },
    return503OnClosing: true,
    forceCloseConnections: true,
    // What the parser and router refuse before any handler still answers with a registry code
    // (client-errors.ts). A request without Host reaches the onRequest hook below instead of
    // Node's empty 400.
    http: { requireHostHeader: false },
    clientErrorHandler: (error, socket) => answerClientError(error, socket, `${prefix}-${(++nextId).toString(36)}`, options.metrics),
    frameworkErrors: (error, request, reply) =>
      error.code === 'FST_ERR_MAX_PARAM_LENGTH'
        ? sendError(reply, request.id, 'ROUTE_NOT_FOUND', 'A path segment is longer than any id.')
        : sendError(reply, request.id, 'MALFORMED_REQUEST', error.code === 'FST_ERR_BAD_URL' ? 'The path is not valid percent-encoding.' : undefined),
  });
  app.server.on('checkExpectation', (request, response) => answerExpectation(request, response, `${prefix}-${(++nextId).toString(36)}`, options.metrics));
  app.addHook('onRequest', async (request) => {
    // RFC 9112 §3.2: an HTTP/1.1 request without Host is a 400.
    if (request.raw.httpVersion === '1.1' && request.headers.host === undefined)
      throw new AppError('MALFORMED_REQUEST', { message: 'An HTTP/1.1 request needs a Host header.' });
  });
  // JSON only: a text/plain body is refused with UNSUPPORTED_MEDIA_TYPE rather than parsed as a string.
  app.removeContentTypeParser('text/plain');
  const sendError = (reply: FastifyReply, requestId: string, code: ErrorCode, message?: string, details?: Record<string, unknown>) => {
    options.metrics.errors.inc({ code, surface: 'http' });
    const body: Record<string, unknown> = { code, message: message ?? errorRegistry[code].message, requestId };
    if (details) body.details = details;
    return reply.status(errorRegistry[code].status).header('cache-control', 'no-store').send({ error: body });
  };
  const registered: Array<{ method: string; url: string }> = [];
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) if (method !== 'HEAD') registered.push({ method, url: route.url });
  });
  const auth = createAuthenticator({ store: options.store, configuredKey: options.apiKey, tickets: options.tickets, origins: options.origins });
  const routes = [
    ...apiRoutes(options),
    ...agentRoutes(options),
    ...credentialRoutes(options),
    ...keyRoutes(options),
    ...runRoutes(options),
    ...nodeRoutes(options),
  ];

  app.setErrorHandler((error: FastifyError | AppError, request, reply) => {
    if (error instanceof AppError) {
      if (error.status >= 500) request.log.error({ err: error }, 'request failed');
      return sendError(reply, request.id, error.code, error.message, error.details);
    }
    const code = codeOfFrameworkError(error as FastifyError);
    if (code) return sendError(reply, request.id, code, code === 'VALIDATION_FAILED' ? error.message : undefined);
    request.log.error({ err: error }, 'unhandled error');
    return sendError(reply, request.id, 'INTERNAL');
  });
  app.setNotFoundHandler((request, reply) => sendError(reply, request.id, 'ROUTE_NOT_FOUND', `No route ${request.method} ${request.url.split('?')[0]}.`));

  const parse = <T extends z.ZodType>(schema: T | undefined, value: unknown, where: string): z.infer<T> | undefined => {
    if (!schema) return undefined;
    const result = schema.safeParse(value ?? {});
    if (!result.success) {
      throw new AppError('VALIDATION_FAILED', {
        message: `Invalid ${where}: ${result.error.issues.map((i) => `${i.path.join('.') || where} ${i.message}`).join('; ')}`,
        details: { issues: result.error.issues.map((i) => ({ path: [where, ...i.path.map(String)], message: i.message })) },
      });
    }
    return result.data;
  };

  for (const route of routes) {
    app.route({
      method: route.method,
      url: route.url,
      handler: async (request, reply) => {
        const params = parse(route.params, request.params, 'path') ?? {};
        // The session an 'agent' or 'api-or-viewer' caller must be for: the `:id` its params parsed
        // (defineRoute insists those routes have one), so a missing id is never a valid token.
        const sessionId = typeof params.id === 'string' && isSessionId(params.id) ? params.id : undefined;
        let principal: Principal | null = null;
        if (route.auth === 'agent') {
          if (!sessionId) throw new AppError('AGENT_TOKEN_INVALID');
          principal = await authenticateAgent(options.store, request, sessionId);
        } else if (route.auth !== 'none') {
          principal = await auth.authenticate(request, { ticketFor: route.auth === 'api-or-viewer' ? sessionId : undefined });
          if (route.auth === 'api-key' && principal.kind !== 'api-key') throw new AppError('API_KEY_REQUIRED');
          if (route.auth === 'admin' && !isAdmin(principal)) throw new AppError('API_KEY_ADMIN_REQUIRED');
          // An app key acts only on the sessions it created; an unknown id is left to the handler (404).
          if (sessionId && ownerScope(principal) !== undefined) {
            const session = await options.store.getSession(sessionId);
            if (session) assertCanSee(principal, session);
          }
        }
        const query = parse(route.query, request.query, 'query') ?? {};
        if (route.body && (request.body === undefined || request.body === null)) throw new AppError('MALFORMED_JSON', { message: 'A JSON body is required.' });
        const body = parse(route.body, request.body, 'body');
        const result = await route.handler({ params, query, body, principal, request, reply });
        if (result === streamed) return reply; // answered as a stream, already sent
        // A handler may choose among its documented statuses (201 vs 200); route.status is the fixed one.
        if (route.status) reply.status(route.status);
        return reply.header('cache-control', 'no-store').send(result);
      },
    });
  }

  if (options.internal) registerInternalRoutes(app, options.internal);

  const document = openApiDocument(routes);
  // Public on purpose: the API's description, like /healthz, says nothing about this server's sessions.
  app.get('/v1/openapi.json', async () => document);
  // Counts only, but they show activity: an API key (or the dashboard's login), like the API. A
  // scraper without a key uses the separate listener (PORTHOLE_METRICS_PORT, metrics-listener.ts).
  app.get('/metrics', async (request, reply) => {
    await auth.authenticate(request, {});
    return reply
      .header('cache-control', 'no-store')
      .type(options.metrics.registry.contentType)
      .send(await options.metrics.registry.metrics());
  });

  // ---- pages: dashboard, viewer, assets, first-run login ----
  const page = (file: string, embedders: readonly string[] | null) => async (_request: FastifyRequest, reply: FastifyReply) =>
    reply
      .headers(pageHeaders(embedders))
      .type('text/html; charset=utf-8')
      .send(await readFile(join(viewerDir, file)));
  app.get('/', page('dashboard.html', null));
  app.get('/v1/sessions/:id/viewer', page('viewer.html', options.origins.embedders));
  // The build fingerprints each asset (scripts/build.mjs): a page asks for `?v=<its hash>`, which a
  // browser may keep for a year; any other request revalidates (ETag). Brotli or gzip siblings made
  // by the build go to browsers that accept them (@fastify/static's preCompressed).
  await app.register(fastifyStatic, { root: viewerDir, serve: false, preCompressed: true });
  const assetVersions = await readAssetVersions();
  app.get('/assets/:file', async (request, reply) => {
    const file = (request.params as { file: string }).file;
    if (!assetExtensions.has(extname(file)) || !/^[a-z0-9][a-z0-9._-]*$/i.test(file)) throw new AppError('ROUTE_NOT_FOUND');
    const isCurrent = assetVersions[file] !== undefined && (request.query as { v?: unknown }).v === assetVersions[file];
    // The answer depends on Accept-Encoding (a .br or .gz sibling): caches must keep them apart.
    reply.header('x-content-type-options', 'nosniff').header('vary', 'accept-encoding');
    return reply.sendFile(file, isCurrent ? { maxAge: assetMaxAgeMs, immutable: true } : { maxAge: 0 });
  });
  /**
   * `Secure` when the browser reached porthole over TLS: the request itself, or PORTHOLE_PUBLIC_URL
   * is https (a TLS-terminating proxy in front; porthole does not trust X-Forwarded-Proto).
   */
  const secureAttribute = (request: FastifyRequest) => (request.protocol === 'https' || options.origins.baseUrl.startsWith('https:') ? '; Secure' : '');
  let loginUsed = false;
  const startLogin = (request: FastifyRequest, reply: FastifyReply) => {
    const cookie = options.tickets.issueLogin(loginLifetimeMs);
    return reply
      .header('set-cookie', `${loginCookie}=${cookie}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${loginLifetimeMs / 1000}${secureAttribute(request)}`)
      .headers(pageHeaders(null))
      .redirect('/', 303);
  };
  // same-origin, not no-referrer: with no-referrer, Chromium sends the form's POST with `Origin: null`,
  // which the CSRF check refuses. The form's own address carries nothing secret.
  const loginForm = (reply: FastifyReply, status: number, message: string | null) =>
    reply
      .status(status)
      .headers({ ...pageHeaders(null), 'referrer-policy': 'same-origin' })
      .type('text/html; charset=utf-8')
      .send(loginPage(message));
  // The link `porthole start` printed (once), or one from `porthole login-link` (once each, 10
  // minutes); without a token, a form that takes an admin API key.
  app.get('/login', async (request, reply) => {
    const token = (request.query as { token?: unknown }).token;
    if (token === undefined) return loginForm(reply, 200, null);
    if (typeof token === 'string' && !loginUsed && sameSecret(token, options.loginToken.reveal())) {
      loginUsed = true;
      return startLogin(request, reply);
    }
    if (typeof token === 'string' && options.tickets.redeemLoginLink(token)) return startLogin(request, reply);
    throw new AppError('LOGIN_TOKEN_INVALID');
  });
  // The form's post: an admin API key signs this browser in. A cross-site form post is refused
  // (Origin); a wrong or app key gets the form again with the reason, never the key echoed.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 4096 }, (_request, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });
  app.post('/login', async (request, reply) => {
    if (!isOriginAllowed(request.headers.origin, options.origins)) throw new AppError('CSRF_REJECTED');
    if (!(request.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded')) {
      throw new AppError('UNSUPPORTED_MEDIA_TYPE', { message: 'POST /login takes the login form (application/x-www-form-urlencoded).' });
    }
    const key = typeof (request.body as { apiKey?: unknown } | null)?.apiKey === 'string' ? (request.body as { apiKey: string }).apiKey.trim() : '';
    let principal: Principal | null = null;
    try {
      principal = await auth.apiKey(key);
    } catch (error) {
      if (!(error instanceof AppError) || error.status >= 500) throw error;
    }
    if (!principal) return loginForm(reply, 401, 'That API key is not valid (or was revoked).');
    if (!isAdmin(principal)) return loginForm(reply, 403, 'That is an app key: it sees only its own sessions. The dashboard needs an admin key.');
    request.log.info({ apiKeyId: principal.kind === 'api-key' ? principal.keyId : null }, 'dashboard login with an API key');
    return startLogin(request, reply);
  });
  // Ends this browser's dashboard login: the cookie is cleared and its value refused from now on.
  // A cookie change like any other: a foreign Origin is refused (CSRF_REJECTED).
  app.post('/logout', async (request, reply) => {
    if (!isOriginAllowed(request.headers.origin, options.origins)) throw new AppError('CSRF_REJECTED');
    options.tickets.revokeLogin(readCookie(request.headers.cookie, loginCookie));
    return reply
      .header('set-cookie', `${loginCookie}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0${secureAttribute(request)}`)
      .header('cache-control', 'no-store')
      .send({ ok: true });
  });

  return { app, routes, registered };
}
