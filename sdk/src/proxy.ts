// Serving porthole's viewer through the app's own server: `<prefix>/*` on the app's origin is
// forwarded to porthole, the viewer's WebSocket included, so the browser talks to one origin only.
//
// The browser is not trusted with the app's API key, and the proxy is not a way around that: only
// the viewer's own surface is forwarded (its page, its assets, its WebSocket, and the session routes
// it calls with its ticket). Anything else under the prefix is answered here with 404. The app's
// key is added server-side only to the session routes that `authorize` approves, and never to a
// path that reads credentials or manages keys or webhooks, whatever the allowlist says.

import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { createProxyServer } from 'http-proxy-3';

/** What a request under the prefix asks of porthole, once the prefix is stripped. */
export type ProxiedRoute =
  | { kind: 'viewer'; sessionId: string; method: string; path: string }
  | { kind: 'asset'; method: string; path: string }
  | { kind: 'vnc'; sessionId: string; method: string; path: string }
  | { kind: 'session-api'; sessionId: string; method: string; path: string };

export interface PortholeProxyOptions {
  /** porthole's address as the app's server reaches it, e.g. `http://127.0.0.1:8480`. */
  target: string;
  /** Where the app serves porthole: `/porthole` by default (no trailing slash). */
  prefix?: string;
  /**
   * The app's API key. Sent to porthole only on a session route the browser called without a
   * viewer ticket, and only when `authorize` approves; the browser never sees it.
   */
  apiKey?: string;
  /**
   * Decides whether a request from the browser to a session route (`GET`/`DELETE
   * /v1/sessions/:id`, `…/events`, `POST …/ticket`, `…/diagnosis`) without a viewer ticket may be
   * made with the app's key — e.g. by checking the app's own login cookie and that the session is
   * this user's. It sees the request as the browser sent it (cookies included; they are stripped
   * before forwarding). Not called for requests that carry `Authorization: Ticket …`.
   */
  authorize?: (req: IncomingMessage, route: ProxiedRoute) => boolean | Promise<boolean>;
}

export interface PortholeProxy {
  /** Handles `req` when its path is under the prefix (forwarded or refused) and returns true; false otherwise. */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
  /** The same for an HTTP upgrade: true when the path is under the prefix. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean;
}

const sessionId = '[A-Za-z0-9_-]{1,200}';
const viewerPath = new RegExp(`^/v1/sessions/(${sessionId})/viewer/?$`);
const vncPath = new RegExp(`^/v1/sessions/(${sessionId})/vnc$`);
const sessionApiPath = new RegExp(`^/v1/sessions/(${sessionId})(/events|/ticket|/diagnosis)?$`);
const assetPath = /^\/assets\/[A-Za-z0-9][A-Za-z0-9._-]*$/;
/** Paths the app's key is never added to, even if a later allowlist let one through. */
const neverWithKey = /\/(credentials|keys|webhooks)(\/|$)/;

/** Which session-API methods each sub-path allows (the viewer's calls, nothing more). */
const sessionApiMethods: Record<string, readonly string[]> = {
  '': ['GET', 'DELETE'],
  '/events': ['GET'],
  '/ticket': ['POST'],
  '/diagnosis': ['GET'],
};

/** The route a request under the prefix asks for, or null when it is not the viewer's surface. */
export function classifyPortholeRequest(method: string, path: string, isUpgrade: boolean): ProxiedRoute | null {
  if (isUpgrade) {
    const vnc = vncPath.exec(path);
    return vnc && method === 'GET' ? { kind: 'vnc', sessionId: vnc[1]!, method, path } : null;
  }
  const isRead = method === 'GET' || method === 'HEAD';
  const viewer = viewerPath.exec(path);
  if (viewer) return isRead ? { kind: 'viewer', sessionId: viewer[1]!, method, path } : null;
  if (assetPath.test(path)) return isRead ? { kind: 'asset', method, path } : null;
  const api = sessionApiPath.exec(path);
  if (api && sessionApiMethods[api[2] ?? '']?.includes(method)) return { kind: 'session-api', sessionId: api[1]!, method, path };
  return null;
}

function ticketOf(req: IncomingMessage): boolean {
  const [scheme, value] = (req.headers.authorization ?? '').trim().split(/\s+/, 2);
  return scheme?.toLowerCase() === 'ticket' && Boolean(value);
}

function errorBody(code: string, message: string): string {
  return JSON.stringify({ error: { code, message, requestId: `proxy-${randomBytes(4).toString('hex')}` } });
}

function sendError(res: ServerResponse, status: number, code: string, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = errorBody(code, message);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}

/** A refused upgrade still gets a real HTTP answer, as porthole's own relay gives. */
function refuseUpgrade(socket: Duplex, status: number, reason: string, code: string, message: string): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = errorBody(code, message);
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

const notFound = { code: 'ROUTE_NOT_FOUND', message: 'No such route.' } as const;
const unreachable = { code: 'PORTHOLE_UNREACHABLE', message: 'The porthole server behind this proxy does not answer.' } as const;

/**
 * A proxy for a Node `http` server: call `handle` from the request listener and `upgrade` from the
 * `'upgrade'` listener; each returns false for paths outside the prefix, for the app to serve.
 *
 * porthole checks the WebSocket's `Origin` against `PORTHOLE_ALLOWED_ORIGINS`: the proxy passes
 * the browser's `Origin` unchanged, so the app's origin must be listed there.
 */
export function createPortholeProxy(options: PortholeProxyOptions): PortholeProxy {
  const prefix = (options.prefix ?? '/porthole').replace(/\/+$/, '');
  if (!prefix.startsWith('/')) throw new TypeError(`prefix must start with "/": ${prefix}`);
  const target = new URL(options.target);
  if (target.protocol !== 'http:' && target.protocol !== 'https:') throw new TypeError(`target must be an http(s) URL: ${options.target}`);
  if (options.apiKey !== undefined && !options.authorize) throw new TypeError('apiKey is only used with authorize; pass both, or neither');

  // No x-forwarded-* (porthole reads none), Host kept as the browser sent it (porthole trusts none),
  // no redirects followed; the body and the WebSocket's bytes pass through untouched.
  const proxy = createProxyServer({ target: target.origin, xfwd: false, changeOrigin: false, ws: true });
  // porthole's cookies (its dashboard login) have no business on the app's origin.
  const dropCookies = (proxyRes: IncomingMessage) => {
    delete proxyRes.headers['set-cookie'];
  };
  proxy.on('proxyRes', dropCookies);
  // An upgrade's answer (the 101, or a refusal) never passes through 'proxyRes': http-proxy-3 writes
  // its headers to the socket itself, so they are cleaned here, before its own listeners run.
  proxy.on('proxyReqWs', (proxyReq) => {
    proxyReq.prependListener('upgrade', dropCookies);
    proxyReq.prependListener('response', dropCookies);
  });
  proxy.on('error', (_error, _req, resOrSocket) => {
    if ('writeHead' in resOrSocket) sendError(resOrSocket, 502, unreachable.code, unreachable.message);
    else refuseUpgrade(resOrSocket, 502, 'Bad Gateway', unreachable.code, unreachable.message);
  });

  /** The path and query below the prefix, or null when the request is not under it. */
  function strip(req: IncomingMessage): { path: string; search: string } | null {
    const url = req.url ?? '';
    if (url !== prefix && !url.startsWith(`${prefix}/`) && !url.startsWith(`${prefix}?`)) return null;
    const rest = url.slice(prefix.length);
    const q = rest.indexOf('?');
    return q < 0 ? { path: rest, search: '' } : { path: rest.slice(0, q), search: rest.slice(q) };
  }

  /** What the browser sent that porthole must not see: its cookies, and any credential but a ticket. */
  function scrub(req: IncomingMessage): void {
    delete req.headers.cookie;
    delete req.headers['proxy-authorization'];
    if (!ticketOf(req)) delete req.headers.authorization;
  }

  async function withKeyIfApproved(req: IncomingMessage, route: ProxiedRoute): Promise<boolean> {
    if (route.kind !== 'session-api' || !options.authorize || options.apiKey === undefined) return false;
    if (neverWithKey.test(route.path)) return false;
    return (await options.authorize(req, route)) === true;
  }

  return {
    handle(req, res) {
      const stripped = strip(req);
      if (!stripped) return false;
      const method = (req.method ?? 'GET').toUpperCase();
      const route = classifyPortholeRequest(method, stripped.path, false);
      if (!route) {
        req.resume();
        sendError(res, 404, notFound.code, notFound.message);
        return true;
      }
      const forward = (withKey: boolean) => {
        scrub(req);
        if (withKey) req.headers.authorization = `Bearer ${options.apiKey}`;
        req.url = `${stripped.path}${stripped.search}`;
        proxy.web(req, res);
      };
      if (route.kind !== 'session-api' || ticketOf(req)) {
        forward(false);
        return true;
      }
      // A session route without a ticket: only with the app's key, and only when the app approves.
      // The body waits (paused) while authorize runs.
      req.pause();
      withKeyIfApproved(req, route).then(
        (approved) => {
          if (approved) forward(true);
          else {
            req.resume();
            sendError(res, 401, 'TICKET_MISSING', 'A viewer ticket is required.');
          }
        },
        () => {
          req.resume();
          sendError(res, 500, 'INTERNAL', 'The app could not decide whether to allow this request.');
        },
      );
      return true;
    },

    upgrade(req, socket, head) {
      const stripped = strip(req);
      if (!stripped) return false;
      const route = classifyPortholeRequest((req.method ?? 'GET').toUpperCase(), stripped.path, true);
      if (!route) {
        refuseUpgrade(socket, 404, 'Not Found', notFound.code, notFound.message);
        return true;
      }
      // The ticket rides in the query; nothing else of the browser's credentials goes on.
      scrub(req);
      delete req.headers.authorization;
      req.url = `${stripped.path}${stripped.search}`;
      proxy.ws(req, socket, head);
      return true;
    },
  };
}
