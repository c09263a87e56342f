import type { IncomingMessage, Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocket, WebSocketServer } from 'ws';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Endpoint, SandboxHandle } from '../../drivers/driver.js';
import { connectEndpoint, readRfbBanner } from '../../drivers/endpoint-probes.js';
import { AppError, closeCodeOf, errorRegistry, isErrorCode, type ErrorCode } from '../../protocol/errors.js';
import { isSessionId, type SessionId } from '../../protocol/ids.js';
import type { Session } from '../../protocol/session.js';
import { closeFor } from '../../protocol/close.js';
import type { SessionManager } from '../sessions/session-manager.js';
import type { Metrics } from '../metrics.js';
import type { ViewerConnection, ViewerRegistry } from '../sessions/viewer-registry.js';
import type { TicketSigner } from '../tickets.js';
import { isOriginAllowed, type OriginList } from '../http/origin.js';
import type { NodeFence, Store } from '../../store/store.js';
import { internalAuthHeader, type ClusterKey } from '../cluster/cluster-key.js';
import type { NodeClient } from '../cluster/node-client.js';
import type { TicketNode } from '../tickets.js';

// The one hop between a browser and a sandbox's VNC server: raw RFB bytes over a WebSocket, piped
// with backpressure. Everything that can be refused is refused before the upgrade with a real HTTP
// status; what can only be known after (the session is gone, the sandbox does not answer) closes
// the socket with 4000 + status and the error code as reason, so the viewer can say what happened.

/** More than one host (docs/ARCHITECTURE.md, "Nodes"): reaching sessions on other nodes, and being reached. */
export interface RelayCluster {
  store: Store;
  /** This process's node and generation; null on a `porthole server`, which runs no sandbox. */
  self: (() => NodeFence) | null;
  /** The edge's way to a node's relay (a server, or an all-in-one whose session is elsewhere). */
  nodes: NodeClient | null;
  /** Checks the signature of the internal hop (node side). */
  key: ClusterKey;
  /** Whether browsers may connect here (false on a node: only servers reach it, on the internal path). */
  servesViewers: boolean;
}

export interface RelayOptions {
  /** This process's sessions (all-in-one, node); null on a `porthole server`. */
  sessions: SessionManager | null;
  cluster?: RelayCluster;
  viewers: ViewerRegistry;
  tickets: TicketSigner;
  logger: Logger;
  /** PORTHOLE_ALLOWED_ORIGINS and porthole's own (TrustedOrigins); never the request's Host. */
  allowedOrigins: OriginList;
  /**
   * How often each viewer is pinged (one missed pong drops it), and the bound on noticing a dead
   * sandbox side: a VNC connection silent for half of it is checked with a fresh RFB greeting that
   * must answer within the other half.
   */
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
  /** performance.now() of the last byte from the sandbox. */
  lastSandboxByteAt: number;
  /** Fresh RFB greetings made while the sandbox side was silent (see #watchSandbox). */
  sandboxProbes: number;
}

const routePattern = /^\/v1\/sessions\/([^/]+)\/vnc$/;
/** The node relay: where a server's edge relay opens its hop to the node that runs the session. */
const internalRoutePattern = /^\/internal\/v1\/sessions\/([^/]+)\/vnc$/;
const maxViewerMessageBytes = 1024 * 1024;
/** A frame from the node relay to the edge: a framebuffer update can be large. */
const maxNodeMessageBytes = 64 * 1024 * 1024;
/** How long a server waits for a node relay to accept the hop. */
const nodeHandshakeTimeoutMs = 5_000;

/** Whether a close code may be sent in a close frame (1005, 1006 and 1015 only describe one that was not). */
function isSendableClose(code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
}

/** How long a viewer has to answer the shutdown's close frame before it is cut. */
const closeGraceMs = 2_000;
/** After the VNC connection drops, how long the sandbox's processes of a killed sandbox may take to be gone. */
const sandboxExitGraceMs = 250;
/** Bound on asking the session layer whether the sandbox still runs, so a viewer is never left waiting. */
const sandboxCheckTimeoutMs = 3_000;

/** Writes an HTTP error response on a socket that asked to upgrade, then closes it (cf. ws's abortHandshake). */
function refuseUpgrade(socket: Duplex, code: ErrorCode, requestId: string, options: { message?: string; headers?: Record<string, string> } = {}): void {
  const { status } = errorRegistry[code];
  const body = JSON.stringify({ error: { code, message: options.message ?? errorRegistry[code].message, requestId } });
  const extra = Object.entries(options.headers ?? {})
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  if (socket.writable) {
    socket.end(
      `HTTP/1.1 ${status} ${code}\r\nConnection: close\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nX-Request-Id: ${requestId}\r\n${extra}\r\n${body}`,
    );
  }
  socket.destroy();
}

export class Relay {
  readonly #o: RelayOptions;
  readonly #log: Logger;
  readonly #wss: WebSocketServer;
  /** Viewer departures being written to the store: close() waits for them. */
  readonly #recording = new Set<Promise<unknown>>();
  readonly #connections = new Map<WebSocket, RelayConnectionStats & { alive: boolean }>();
  #pingTimer: NodeJS.Timeout | null = null;
  #nextRequest = 0;

  constructor(options: RelayOptions) {
    this.#o = options;
    this.#log = options.logger.child({ component: 'relay' });
    this.#wss = new WebSocketServer({ noServer: true, maxPayload: maxViewerMessageBytes, perMessageDeflate: false, clientTracking: false });
    // An upgrade ws itself refuses (bad Sec-WebSocket-Key, a version other than 13/8, an Upgrade
    // other than websocket) gets the same JSON refusal as every other, not ws's text/html one.
    this.#wss.on('wsClientError', (error: Error, socket: Duplex) => {
      const requestId = `ws-${(++this.#nextRequest).toString(36)}`;
      this.#log.info({ requestId, code: 'MALFORMED_REQUEST', cause: error.message }, 'viewer upgrade refused');
      this.#o.metrics.errors.inc({ code: 'MALFORMED_REQUEST', surface: 'relay' });
      const headers: Record<string, string> = error.message.includes('Sec-WebSocket-Version') ? { 'Sec-WebSocket-Version': '13, 8' } : {};
      refuseUpgrade(socket, 'MALFORMED_REQUEST', requestId, { message: `${error.message}.`, headers });
    });
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

  /**
   * Closes every viewer with `code` and stops accepting. Resolves once each viewer's close is done
   * and recorded (a viewer that does not answer the close within closeGraceMs is cut), so nothing
   * of the relay logs or writes to the store after the server has closed them.
   */
  async close(code = closeCodeOf('SERVER_SHUTTING_DOWN'), reason: ErrorCode = 'SERVER_SHUTTING_DOWN'): Promise<void> {
    if (this.#pingTimer) clearInterval(this.#pingTimer);
    const open = [...this.#connections.keys()];
    const closed = open.map((ws) => (ws.readyState === ws.CLOSED ? Promise.resolve() : new Promise<void>((resolve) => ws.once('close', () => resolve()))));
    for (const ws of open) ws.close(code, reason);
    this.#wss.close();
    const cut = setTimeout(() => {
      for (const ws of open) ws.terminate();
    }, closeGraceMs);
    await Promise.all(closed);
    clearTimeout(cut);
    await Promise.allSettled([...this.#recording]);
  }

  async #handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const requestId = `ws-${(++this.#nextRequest).toString(36)}`;
    const url = new URL(request.url ?? '/', 'http://relay.invalid');
    const internalMatch = internalRoutePattern.exec(url.pathname);
    const match = internalMatch ?? routePattern.exec(url.pathname);
    const log = this.#log.child({ requestId });
    const cluster = this.#o.cluster;
    const refuse = (code: ErrorCode) => {
      log.info({ code, path: url.pathname }, 'viewer upgrade refused');
      this.#o.metrics.errors.inc({ code, surface: 'relay' });
      refuseUpgrade(socket, code, requestId);
    };
    if (!match || request.method !== 'GET') return refuse('ROUTE_NOT_FOUND');
    let rawId: string;
    try {
      rawId = decodeURIComponent(match[1] ?? '');
    } catch {
      // A malformed percent-encoding (%E0%A4%A, %ZZ): no session can have that id, nor a route that path.
      return refuse('ROUTE_NOT_FOUND');
    }
    if (internalMatch) {
      // A server's edge relay, signed with the cluster key; no browser, so no Origin.
      if (!cluster?.self) return refuse('ROUTE_NOT_FOUND');
      try {
        const signature = request.headers[internalAuthHeader];
        cluster.key.verify(Array.isArray(signature) ? signature[0] : signature, 'GET', url.pathname);
      } catch (error) {
        if (error instanceof AppError) return refuse(error.code);
        throw error;
      }
    } else {
      if (cluster && !cluster.servesViewers) return refuse('ROUTE_NOT_FOUND');
      if (!isOriginAllowed(request.headers.origin, this.#o.allowedOrigins)) return refuse('ORIGIN_NOT_ALLOWED');
    }
    // An id that cannot be a session id cannot be signed into a ticket either; say "not found" as a close, like an unknown one.
    const sessionId = rawId as SessionId;
    const ticket = url.searchParams.get('ticket');
    let isProbe: boolean;
    let ticketNode: TicketNode | null;
    try {
      ({ isProbe, node: ticketNode } = this.#o.tickets.verify(ticket, sessionId, { allowProbe: true }));
    } catch (error) {
      if (error instanceof AppError) return refuse(error.code);
      throw error;
    }
    const self = cluster?.self?.() ?? null;
    const sessions = this.#o.sessions;
    // Another node's session, or a server's (which has none of its own): relayed to its node.
    if (!internalMatch && cluster?.nodes && (!sessions || (ticketNode !== null && ticketNode.id !== self?.nodeId))) {
      return this.#edge(request, socket, head, sessionId, ticket ?? '', ticketNode, log);
    }
    if (!sessions) return refuse('ROUTE_NOT_FOUND');

    const ws = await new Promise<WebSocket>((resolve) => this.#wss.handleUpgrade(request, socket, head, resolve));
    const closeWith = (code: ErrorCode, detail?: string) => {
      log.info({ sessionId, code, detail }, 'viewer closed');
      this.#o.metrics.errors.inc({ code, surface: 'relay' });
      ws.close(closeCodeOf(code), code);
    };
    if (!isSessionId(sessionId)) return closeWith('SESSION_NOT_FOUND');

    let handle: SandboxHandle;
    try {
      const session = await sessions.get(sessionId);
      // Over, or not there yet: the session's state decides the close (src/protocol/close.ts).
      const close = closeFor(session);
      if (close?.reason === 'completed') return ws.close(close.code, close.reason);
      // Still starting, but its desktop answers (the sign-in is being started): the person may watch it come up.
      const isWatchable = close?.reason === 'SESSION_NOT_READY' && sessions.isDesktopUp(session.id);
      if (close && !isWatchable) return closeWith(close.reason);
      // A ticket for a generation this node no longer has (it fenced itself, or was declared lost).
      if (self && ticketNode && (ticketNode.id !== self.nodeId || ticketNode.generation !== self.generation)) return closeWith('NODE_FENCED');
      handle = await sessions.sandboxOf(session);
    } catch (error) {
      if (error instanceof AppError) return closeWith(error.code, error.message);
      throw error;
    }

    let vnc: Socket;
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
    this.#pipe(ws, vnc, handle.vnc, sessionId, log, isProbe);
  }

  /**
   * `isProbe`: the diagnosis's own round trip. Piped like any viewer, but not one: it does not move
   * the session to authenticating, reset its idle clock, or appear in the viewer registry or timeline.
   */
  #pipe(ws: WebSocket, vnc: Socket, endpoint: Endpoint, sessionId: SessionId, log: Logger, isProbe = false): void {
    const highWaterMark = this.#o.highWaterMarkBytes ?? 256 * 1024;
    const stats = {
      sessionId,
      bytesToViewer: 0,
      bytesFromViewer: 0,
      bufferedAmount: 0,
      maxBufferedAmount: 0,
      sandboxPaused: false,
      lastSandboxByteAt: performance.now(),
      sandboxProbes: 0,
      alive: true,
    };
    this.#connections.set(ws, stats);
    const { metrics } = this.#o;
    metrics.relayConnections.inc();
    metrics.relayConnectionsTotal.inc();
    // A WebSocket paused for backpressure reads nothing, not even the viewer's answering close
    // frame: resumed first, or the close handshake would hang until ws's 30 s close timeout.
    const closeViewerWith = (code: number, reason: string) => {
      if (ws.isPaused) ws.resume();
      ws.close(code, reason);
    };
    const viewer: ViewerConnection = { close: closeViewerWith };
    if (isProbe) log.debug({ sessionId }, 'diagnosis probe connected');
    else {
      const count = this.#o.viewers.add(sessionId, viewer);
      log.info({ sessionId, viewers: count }, 'viewer connected');
      void this.#o.sessions?.viewerConnected(sessionId, { viewers: count }).catch((error) => log.warn({ err: error }, 'could not record viewer'));
    }

    ws.on('pong', () => (stats.alive = true));
    // Sandbox → viewer: pause the sandbox socket while the viewer's socket is behind; resume once
    // ws has flushed what it had. Memory per connection stays within highWaterMark + one chunk.
    vnc.on('data', (chunk: Buffer) => this.#sendToViewer(ws, stats, chunk, true, vnc, highWaterMark));
    // Viewer → sandbox: stop reading the WebSocket while the sandbox socket is behind.
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) return;
      stats.bytesFromViewer += data.length;
      metrics.relayBytes.inc({ direction: 'to_sandbox' }, data.length);
      // Nowhere to go once the sandbox side is gone (and a destroyed socket's write() is false: no pause for it).
      if (vnc.destroyed) return;
      if (!vnc.write(data)) {
        ws.pause();
        vnc.once('drain', () => ws.resume());
      }
    });

    let ended = false;
    const stopWatching = new AbortController();
    const finish = (why: string, closeCode?: ErrorCode) => {
      if (ended) return;
      ended = true;
      stopWatching.abort();
      this.#connections.delete(ws);
      metrics.relayConnections.dec();
      if (closeCode) metrics.errors.inc({ code: closeCode, surface: 'relay' });
      vnc.destroy();
      if (closeCode && ws.readyState === ws.OPEN) closeViewerWith(closeCodeOf(closeCode), closeCode);
      else if (ws.readyState !== ws.CLOSED && ws.readyState !== ws.CLOSING) ws.terminate();
      if (isProbe) return log.debug({ sessionId, why }, 'diagnosis probe disconnected');
      const remaining = this.#o.viewers.remove(sessionId, viewer);
      log.info({ sessionId, why, bytesToViewer: stats.bytesToViewer, bytesFromViewer: stats.bytesFromViewer, viewers: remaining }, 'viewer disconnected');
      const recorded = (this.#o.sessions?.viewerDisconnected(sessionId, { why, viewers: remaining }) ?? Promise.resolve()).then(
        () => undefined,
        (error: unknown) => log.warn({ err: error }, 'could not record viewer leaving'),
      );
      this.#recording.add(recorded);
      void recorded.finally(() => this.#recording.delete(recorded));
    };
    // The sandbox side is gone (closed, reset, or dead silent): when the sandbox itself has exited,
    // the session ends now (its viewers get the ended code and sentence through the registry);
    // otherwise the VNC server alone went away and this viewer gets 4502 and may come back.
    let isSandboxLost = false;
    const sandboxLost = (why: string, graceMs: number) => {
      if (ended || isSandboxLost) return;
      isSandboxLost = true;
      vnc.destroy();
      log.info({ sessionId, why }, 'sandbox side of a viewer connection lost');
      void this.#endedSession(sessionId, graceMs, log).then((session) => {
        const close = session ? closeFor(session) : null;
        // Completed: ending it already closed this viewer with 1000 `completed`.
        if (close?.reason === 'completed') finish(why);
        else finish(why, close?.reason ?? 'SANDBOX_UNREACHABLE');
      });
    };
    ws.on('close', (code, reason) => finish(`viewer closed ${code}${reason.length ? ` ${reason.toString()}` : ''}`));
    ws.on('error', (error) => finish(`viewer error: ${error.message}`));
    vnc.on('error', (error) => sandboxLost(`sandbox socket error: ${(error as NodeJS.ErrnoException).code ?? error.message}`, sandboxExitGraceMs));
    vnc.on('close', () => sandboxLost('sandbox closed the VNC connection', sandboxExitGraceMs));
    this.#watchSandbox(stats, endpoint, stopWatching.signal, (why) => sandboxLost(why, 0));
  }

  /**
   * The edge relay: a viewer of a session on another node. The browser's WebSocket is accepted here
   * and piped, frame for frame, to the owning node's relay over the internal hop (signed with the
   * cluster key; the node checks the ticket again). Close codes pass through both ways; pings keep
   * each side alive on its own, and a node hop that drops without a close is the node's loss to
   * name: the session's ending when the catalog has one (NODE_LOST), else NODE_UNREACHABLE (4502),
   * after which the viewer comes back.
   */
  async #edge(
    request: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    sessionId: SessionId,
    ticket: string,
    ticketNode: TicketNode | null,
    log: Logger,
  ): Promise<void> {
    const cluster = this.#o.cluster as RelayCluster & { nodes: NodeClient };
    const ws = await new Promise<WebSocket>((resolve) => this.#wss.handleUpgrade(request, socket, head, resolve));
    const closeWith = (code: ErrorCode, detail?: string) => {
      log.info({ sessionId, code, detail }, 'viewer closed');
      this.#o.metrics.errors.inc({ code, surface: 'relay' });
      if (ws.readyState === ws.OPEN) ws.close(closeCodeOf(code), code);
    };
    if (!isSessionId(sessionId)) return closeWith('SESSION_NOT_FOUND');
    let upstream: WebSocket;
    let nodeId: string;
    try {
      const session = await cluster.store.getSession(sessionId);
      if (!session) return closeWith('SESSION_NOT_FOUND');
      const close = closeFor(session);
      if (close?.reason === 'completed') return ws.close(close.code, close.reason);
      // Starting: the node alone knows whether its desktop may be watched yet.
      if (close && close.reason !== 'SESSION_NOT_READY') return closeWith(close.reason);
      const target = ticketNode ?? session.node;
      if (!target) return closeWith('SANDBOX_UNREACHABLE', 'the session has no node');
      nodeId = target.id;
      const node = await cluster.store.getNode(target.id);
      if (!node || node.state === 'dead' || node.generation !== target.generation) {
        return closeWith('NODE_UNREACHABLE', `the node ${target.id} is ${node ? `${node.state}, generation ${node.generation}` : 'not in the catalog'}`);
      }
      const hop = cluster.nodes.relay(node, sessionId);
      upstream = await openNodeHop(`${hop.url}?ticket=${encodeURIComponent(ticket)}`, hop.headers);
    } catch (error) {
      if (error instanceof AppError) return closeWith(error.code, error.message);
      throw error;
    }
    if (ws.readyState !== ws.OPEN) {
      upstream.terminate();
      return;
    }
    this.#pipeEdge(ws, upstream, sessionId, nodeId, log);
  }

  #pipeEdge(ws: WebSocket, upstream: WebSocket, sessionId: SessionId, nodeId: string, log: Logger): void {
    const highWaterMark = this.#o.highWaterMarkBytes ?? 256 * 1024;
    const stats = {
      sessionId,
      bytesToViewer: 0,
      bytesFromViewer: 0,
      bufferedAmount: 0,
      maxBufferedAmount: 0,
      sandboxPaused: false,
      lastSandboxByteAt: performance.now(),
      sandboxProbes: 0,
      alive: true,
    };
    this.#connections.set(ws, stats);
    const { metrics } = this.#o;
    metrics.relayConnections.inc();
    metrics.relayConnectionsTotal.inc();
    log.info({ sessionId, nodeId }, 'viewer connected through the edge');
    ws.on('pong', () => (stats.alive = true));
    // The node hop's own liveness: a node that vanished without a FIN (partitioned) misses a pong.
    let isNodeAlive = true;
    upstream.on('pong', () => (isNodeAlive = true));
    // And the catalog's word, which reaches every server: a session another server ended, or one
    // the reaper failed with its host (NODE_LOST, while the node itself cannot say so: partitioned).
    const checkSession = async () => {
      const session = await this.#o.cluster?.store.getSession(sessionId).catch(() => null);
      const close = session ? closeFor(session) : null;
      if (!close || close.reason === 'SESSION_NOT_READY' || ws.readyState !== ws.OPEN) return;
      log.info({ sessionId, nodeId, code: close.reason }, 'the catalog ended the session: closing its edge viewer');
      ws.close(close.code, close.reason);
    };
    const pinger = setInterval(() => {
      void checkSession();
      if (!isNodeAlive) return upstream.terminate();
      isNodeAlive = false;
      upstream.ping();
    }, this.#o.pingIntervalMs).unref();

    // The same backpressure as the node relay's own: the node hop is paused while the viewer is behind.
    upstream.on('message', (data: Buffer, isBinary: boolean) => this.#sendToViewer(ws, stats, data, isBinary, upstream, highWaterMark));
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      stats.bytesFromViewer += data.length;
      metrics.relayBytes.inc({ direction: 'to_sandbox' }, data.length);
      if (upstream.readyState !== upstream.OPEN) return;
      upstream.send(data, { binary: isBinary }, () => {
        if (ws.isPaused && upstream.bufferedAmount < highWaterMark / 2) ws.resume();
      });
      if (upstream.bufferedAmount >= highWaterMark && !ws.isPaused) ws.pause();
    });

    let ended = false;
    const finish = (why: string) => {
      if (ended) return false;
      ended = true;
      clearInterval(pinger);
      this.#connections.delete(ws);
      metrics.relayConnections.dec();
      log.info({ sessionId, nodeId, why, bytesToViewer: stats.bytesToViewer, bytesFromViewer: stats.bytesFromViewer }, 'viewer disconnected from the edge');
      return true;
    };
    ws.on('close', (code, reason) => {
      if (!finish(`viewer closed ${code}`)) return;
      if (upstream.readyState === upstream.OPEN) upstream.close(isSendableClose(code) ? code : 1000, reason);
      else upstream.terminate();
    });
    ws.on('error', () => ws.terminate());
    upstream.on('error', (error) => log.info({ sessionId, nodeId, err: error }, 'node hop error'));
    upstream.on('close', (code, reason) => {
      if (!finish(`node hop closed ${code}`)) return;
      if (ws.isPaused) ws.resume();
      // The node said why: passed on as it is.
      if (isSendableClose(code)) return ws.readyState === ws.OPEN && ws.close(code, reason);
      // It went without a word: the catalog may already say the host is lost.
      void (async () => {
        const session = await this.#o.cluster?.store.getSession(sessionId).catch(() => null);
        const close = session ? closeFor(session) : null;
        const code: ErrorCode = close && close.reason !== 'completed' && close.reason !== 'SESSION_NOT_READY' ? close.reason : 'NODE_UNREACHABLE';
        metrics.errors.inc({ code, surface: 'relay' });
        log.info({ sessionId, nodeId, code }, 'node hop dropped');
        if (ws.readyState === ws.OPEN) ws.close(closeCodeOf(code), code);
      })();
    });
  }

  /**
   * One chunk from the sandbox side (the VNC socket, or the node hop) to the viewer: the source is
   * paused while the viewer's socket holds highWaterMark or more, and resumed once ws has flushed
   * down to half of it. Memory per connection stays within highWaterMark + one chunk.
   */
  #sendToViewer(
    ws: WebSocket,
    stats: RelayConnectionStats,
    data: Buffer,
    isBinary: boolean,
    source: { pause(): unknown; resume(): unknown },
    highWaterMark: number,
  ): void {
    stats.lastSandboxByteAt = performance.now();
    stats.bytesToViewer += data.length;
    this.#o.metrics.relayBytes.inc({ direction: 'to_viewer' }, data.length);
    ws.send(data, { binary: isBinary }, () => {
      stats.bufferedAmount = ws.bufferedAmount;
      if (stats.sandboxPaused && ws.bufferedAmount < highWaterMark / 2) {
        stats.sandboxPaused = false;
        source.resume();
      }
    });
    stats.bufferedAmount = ws.bufferedAmount;
    if (stats.bufferedAmount > stats.maxBufferedAmount) stats.maxBufferedAmount = stats.bufferedAmount;
    if (ws.bufferedAmount >= highWaterMark && !stats.sandboxPaused) {
      stats.sandboxPaused = true;
      source.pause();
    }
  }

  /**
   * The session, when the sandbox behind a dropped VNC connection has exited and the session is
   * therefore (now) terminal; null while the sandbox runs. A killed sandbox's VNC connection can
   * drop a moment before its last process is gone, hence a second look after `graceMs` (0: none).
   */
  async #endedSession(sessionId: SessionId, graceMs: number, log: Logger): Promise<Session | null> {
    const sessions = this.#o.sessions;
    if (!sessions) return null;
    const check = async (): Promise<Session | null> =>
      (await sessions.endIfSandboxExited(sessionId)) ?? (graceMs > 0 ? await sleep(graceMs).then(() => sessions.endIfSandboxExited(sessionId)) : null);
    const timeout = sleep(sandboxCheckTimeoutMs, null, { ref: false });
    try {
      return await Promise.race([check(), timeout]);
    } catch (error) {
      log.warn({ err: error, sessionId }, 'could not check whether the sandbox still runs');
      return null;
    }
  }

  /**
   * Liveness of the sandbox side, which pings cannot give: RFB has no ping, and a VNC server may
   * rightly say nothing for minutes (an incremental FramebufferUpdateRequest is only answered when
   * the screen changes), so silence alone proves nothing and the stream itself cannot be probed
   * without disturbing the viewer. Instead, once the connection has been silent for half the ping
   * interval, a fresh connection to the same endpoint must bring an RFB banner within the other
   * half. A blackholed or half-open path (bytes go in, nothing comes out, no FIN, no RST) fails
   * that and is dropped within one ping interval of its last byte; a healthy idle server answers in
   * milliseconds. A byte on the stream meanwhile, or the viewer being the slow side (the sandbox
   * socket paused by backpressure), counts as alive.
   */
  #watchSandbox(stats: RelayConnectionStats, endpoint: Endpoint, signal: AbortSignal, sandboxLost: (why: string) => void): void {
    const silenceMs = Math.max(1, Math.floor(this.#o.pingIntervalMs / 2));
    const probeTimeoutMs = Math.max(1, this.#o.pingIntervalMs - silenceMs);
    let timer: NodeJS.Timeout | null = null;
    const arm = (ms: number) => {
      if (!signal.aborted) timer = setTimeout(check, ms).unref();
    };
    const check = () => {
      const quietMs = performance.now() - stats.lastSandboxByteAt;
      if (stats.sandboxPaused) return arm(silenceMs);
      if (quietMs < silenceMs) return arm(silenceMs - quietMs);
      const probeStarted = performance.now();
      stats.sandboxProbes++;
      readRfbBanner(endpoint, { signal, timeoutMs: probeTimeoutMs }).then(
        () => arm(silenceMs),
        (error: unknown) => {
          if (signal.aborted) return;
          if (stats.lastSandboxByteAt > probeStarted) return arm(silenceMs); // the stream spoke meanwhile
          const details = error instanceof AppError ? (error.details ?? {}) : {};
          const errno = typeof details.code === 'string' ? details.code : ((error as NodeJS.ErrnoException).code ?? 'EIO');
          const silentMs = Math.round(performance.now() - stats.lastSandboxByteAt);
          sandboxLost(`no byte from the VNC server for ${silentMs} ms, and a new connection to it got no RFB banner within ${probeTimeoutMs} ms (${errno})`);
        },
      );
    };
    signal.addEventListener('abort', () => timer && clearTimeout(timer), { once: true });
    arm(silenceMs);
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

/**
 * Opens the hop to a node relay. A node that refused before the upgrade (its JSON error) is that
 * error; one that did not answer is NODE_UNREACHABLE.
 */
function openNodeHop(url: string, headers: Record<string, string>): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const upstream = new WebSocket(url, { headers, perMessageDeflate: false, handshakeTimeout: nodeHandshakeTimeoutMs, maxPayload: maxNodeMessageBytes });
    upstream.once('open', () => resolve(upstream));
    upstream.once('unexpected-response', (_request, response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        upstream.terminate();
        let code: unknown;
        try {
          code = (JSON.parse(Buffer.concat(chunks).toString()) as { error?: { code?: unknown } }).error?.code;
        } catch {}
        reject(new AppError(isErrorCode(code) ? code : 'NODE_UNREACHABLE', { message: `The node relay refused the hop with ${response.statusCode}.` }));
      });
    });
    upstream.once('error', (error: NodeJS.ErrnoException) => {
      reject(new AppError('NODE_UNREACHABLE', { message: `The node relay does not answer: ${error.code ?? error.message}.`, cause: error }));
    });
  });
}
