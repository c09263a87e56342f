import type { IncomingMessage, Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { connectEndpoint } from '../../drivers/endpoint-probes.js';
import { AppError, closeCodeOf, errorRegistry, type ErrorCode } from '../../protocol/errors.js';
import { isSessionId, type SessionId } from '../../protocol/ids.js';
import { closeReasonOf, type SessionManager } from '../sessions/session-manager.js';
import type { Metrics } from '../metrics.js';
import type { ViewerConnection, ViewerRegistry } from '../sessions/viewer-registry.js';
import type { TicketSigner } from '../tickets.js';
import { isOriginAllowed } from '../http/origin.js';

// The one hop between a browser and a sandbox's VNC server: raw RFB bytes over a WebSocket, piped
// with backpressure. Everything that can be refused is refused before the upgrade with a real HTTP
// status; what can only be known after (the session is gone, the sandbox does not answer) closes
// the socket with 4000 + status and the error code as reason, so the viewer can say what happened.

export interface RelayOptions {
  sessions: SessionManager;
  viewers: ViewerRegistry;
  tickets: TicketSigner;
  logger: Logger;
  allowedOrigins: readonly string[];
  pingIntervalMs: number;
  metrics: Metrics;
  /** Bytes buffered towards a slow viewer before the sandbox side is paused. */
  highWaterMarkBytes?: number;
}

export interface RelayConnectionStats {
  sessionId: SessionId;
  bytesToViewer: number;
  bytesFromViewer: number;
  /** Bytes queued in the WebSocket (not yet written to the viewer's TCP socket). */
  bufferedAmount: number;
  /** Largest bufferedAmount seen: the backpressure bound. */
  maxBufferedAmount: number;
  sandboxPaused: boolean;
}

const routePattern = /^\/v1\/sessions\/([^/]+)\/vnc$/;
const maxViewerMessageBytes = 1024 * 1024;

/** Writes an HTTP error response on a socket that asked to upgrade, then closes it (cf. ws's abortHandshake). */
function refuseUpgrade(socket: Duplex, code: ErrorCode, requestId: string): void {
  const { status, message } = errorRegistry[code];
  const body = JSON.stringify({ error: { code, message, requestId } });
  if (socket.writable) {
    socket.end(
      `HTTP/1.1 ${status} ${code}\r\nConnection: close\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nX-Request-Id: ${requestId}\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}

export class Relay {
  readonly #o: RelayOptions;
  readonly #log: Logger;
  readonly #wss: WebSocketServer;
  readonly #connections = new Map<WebSocket, RelayConnectionStats & { alive: boolean }>();
  #pingTimer: NodeJS.Timeout | null = null;
  #nextRequest = 0;

  constructor(options: RelayOptions) {
    this.#o = options;
    this.#log = options.logger.child({ component: 'relay' });
    this.#wss = new WebSocketServer({ noServer: true, maxPayload: maxViewerMessageBytes, perMessageDeflate: false, clientTracking: false });
  }

  attach(server: Server): void {
    server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on('error', () => socket.destroy());
      this.#handleUpgrade(request, socket, head).catch((error) => {
        this.#log.error({ err: error }, 'upgrade failed');
        refuseUpgrade(socket, 'INTERNAL', 'relay');
      });
    });
    this.#pingTimer = setInterval(() => this.#pingAll(), this.#o.pingIntervalMs).unref();
  }

  stats(): RelayConnectionStats[] {
    return [...this.#connections.values()].map(({ alive: _alive, ...stats }) => ({ ...stats }));
  }

  close(code = closeCodeOf('SERVER_SHUTTING_DOWN'), reason: ErrorCode = 'SERVER_SHUTTING_DOWN'): void {
    if (this.#pingTimer) clearInterval(this.#pingTimer);
    for (const ws of this.#connections.keys()) ws.close(code, reason);
    this.#wss.close();
  }

  async #handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const requestId = `ws-${(++this.#nextRequest).toString(36)}`;
    const url = new URL(request.url ?? '/', 'http://relay.invalid');
    const match = routePattern.exec(url.pathname);
    const log = this.#log.child({ requestId });
    const refuse = (code: ErrorCode) => {
      log.info({ code, path: url.pathname }, 'viewer upgrade refused');
      this.#o.metrics.errors.inc({ code, surface: 'relay' });
      refuseUpgrade(socket, code, requestId);
    };
    if (!match || request.method !== 'GET') return refuse('ROUTE_NOT_FOUND');
    const rawId = decodeURIComponent(match[1] ?? '');
    if (!isOriginAllowed(request.headers.origin, request.headers.host, this.#o.allowedOrigins)) return refuse('ORIGIN_NOT_ALLOWED');
    // An id that cannot be a session id cannot be signed into a ticket either; say "not found" as a close, like an unknown one.
    const sessionId = rawId as SessionId;
    try {
      this.#o.tickets.verify(url.searchParams.get('ticket'), sessionId);
    } catch (error) {
      if (error instanceof AppError) return refuse(error.code);
      throw error;
    }

    const ws = await new Promise<WebSocket>((resolve) => this.#wss.handleUpgrade(request, socket, head, resolve));
    const closeWith = (code: ErrorCode, detail?: string) => {
      log.info({ sessionId, code, detail }, 'viewer closed');
      this.#o.metrics.errors.inc({ code, surface: 'relay' });
      ws.close(closeCodeOf(code), code);
    };
    if (!isSessionId(sessionId)) return closeWith('SESSION_NOT_FOUND');

    let handle;
    try {
      const session = await this.#o.sessions.get(sessionId);
      if (session.state === 'completed') return ws.close(1000, 'completed');
      if (session.state === 'failed' || session.state === 'ended') return closeWith(closeReasonOf(session));
      if (session.state === 'starting') return closeWith('SESSION_NOT_READY');
      handle = await this.#o.sessions.sandboxOf(session);
    } catch (error) {
      if (error instanceof AppError) return closeWith(error.code, error.message);
      throw error;
    }

    let vnc;
    try {
      vnc = await connectEndpoint(handle.vnc, AbortSignal.timeout(5_000));
    } catch (error) {
      log.warn({ err: error, sessionId }, 'sandbox VNC endpoint does not answer');
      return closeWith('SANDBOX_UNREACHABLE', (error as Error).message);
    }
    if (ws.readyState !== ws.OPEN) {
      vnc.destroy();
      return;
    }
    this.#pipe(ws, vnc, sessionId, log);
  }

  #pipe(ws: WebSocket, vnc: Socket, sessionId: SessionId, log: Logger): void {
    const highWaterMark = this.#o.highWaterMarkBytes ?? 256 * 1024;
    const stats = { sessionId, bytesToViewer: 0, bytesFromViewer: 0, bufferedAmount: 0, maxBufferedAmount: 0, sandboxPaused: false, alive: true };
    this.#connections.set(ws, stats);
    const { metrics } = this.#o;
    metrics.relayConnections.inc();
    metrics.relayConnectionsTotal.inc();
    const viewer: ViewerConnection = { close: (code, reason) => ws.close(code, reason) };
    const count = this.#o.viewers.add(sessionId, viewer);
    log.info({ sessionId, viewers: count }, 'viewer connected');
    void this.#o.sessions.viewerConnected(sessionId, { viewers: count }).catch((error) => log.warn({ err: error }, 'could not record viewer'));

    ws.on('pong', () => (stats.alive = true));
    // Sandbox → viewer: pause the sandbox socket while the viewer's socket is behind; resume once
    // ws has flushed what it had. Memory per connection stays within highWaterMark + one chunk.
    vnc.on('data', (chunk: Buffer) => {
      stats.bytesToViewer += chunk.length;
      metrics.relayBytes.inc({ direction: 'to_viewer' }, chunk.length);
      ws.send(chunk, { binary: true }, () => {
        stats.bufferedAmount = ws.bufferedAmount;
        if (stats.sandboxPaused && ws.bufferedAmount < highWaterMark / 2) {
          stats.sandboxPaused = false;
          vnc.resume();
        }
      });
      stats.bufferedAmount = ws.bufferedAmount;
      if (stats.bufferedAmount > stats.maxBufferedAmount) stats.maxBufferedAmount = stats.bufferedAmount;
      if (ws.bufferedAmount >= highWaterMark && !stats.sandboxPaused) {
        stats.sandboxPaused = true;
        vnc.pause();
      }
    });
    // Viewer → sandbox: stop reading the WebSocket while the sandbox socket is behind.
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) return;
      stats.bytesFromViewer += data.length;
      metrics.relayBytes.inc({ direction: 'to_sandbox' }, data.length);
      if (!vnc.write(data)) {
        ws.pause();
        vnc.once('drain', () => ws.resume());
      }
    });

    let ended = false;
    const finish = (why: string, closeCode?: ErrorCode) => {
      if (ended) return;
      ended = true;
      this.#connections.delete(ws);
      metrics.relayConnections.dec();
      if (closeCode) metrics.errors.inc({ code: closeCode, surface: 'relay' });
      const remaining = this.#o.viewers.remove(sessionId, viewer);
      vnc.destroy();
      if (closeCode && ws.readyState === ws.OPEN) ws.close(closeCodeOf(closeCode), closeCode);
      else if (ws.readyState !== ws.CLOSED && ws.readyState !== ws.CLOSING) ws.terminate();
      log.info({ sessionId, why, bytesToViewer: stats.bytesToViewer, bytesFromViewer: stats.bytesFromViewer, viewers: remaining }, 'viewer disconnected');
      void this.#o.sessions.viewerDisconnected(sessionId, { why, viewers: remaining }).catch((error) => log.warn({ err: error }, 'could not record viewer leaving'));
    };
    ws.on('close', (code, reason) => finish(`viewer closed ${code}${reason.length ? ` ${reason.toString()}` : ''}`));
    ws.on('error', (error) => finish(`viewer error: ${error.message}`));
    vnc.on('error', (error) => finish(`sandbox socket error: ${(error as NodeJS.ErrnoException).code ?? error.message}`, 'SANDBOX_UNREACHABLE'));
    vnc.on('close', () => finish('sandbox closed the VNC connection', 'SANDBOX_UNREACHABLE'));
  }

  #pingAll(): void {
    for (const [ws, stats] of this.#connections) {
      if (!stats.alive) {
        this.#log.info({ sessionId: stats.sessionId }, 'viewer did not answer ping; terminating');
        ws.terminate();
        continue;
      }
      stats.alive = false;
      ws.ping();
    }
  }
}

