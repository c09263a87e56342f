import { chmod, lstat, unlink } from 'node:fs/promises';
import { STATUS_CODES, createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { pipeline } from 'node:stream';
import {
  authorityOf,
  connectRequestHead,
  egressHeader,
  maxConnectResponseHeadBytes,
  parseConnectResponseHead,
  type EgressEvent,
  type EgressRefusalReason,
} from '../../protocol/egress.js';
import type { Logger } from '../logger.js';
import { createEgressPolicy, isLoopbackAddress, type EgressDecision, type EgressPolicyOptions } from './egress-policy.js';

// The sandbox's only way out: an HTTP proxy (CONNECT and absolute-form http://) on one unix socket
// per session. The agent inside the sandbox pipes 127.0.0.1:3128 of the sandbox's own network
// namespace to it. Each destination is decided by the policy after resolving the name here, and
// the proxy connects to the checked address, never to the name. With an upstream proxy, allowed
// destinations (except loopback exceptions, which are this host's own services) are reached
// through it with CONNECT <checked address>:<port>; plain HTTP goes through such a tunnel too, so
// the upstream never sees a path.

export interface EgressProxyOptions {
  readonly policy?: EgressPolicyOptions;
  /** An http:// proxy to reach allowed destinations through (PORTHOLE_EGRESS_UPSTREAM); credentials in the URL go as Basic Proxy-Authorization. */
  readonly upstream?: URL | null;
  readonly logger?: Logger;
  /** How long reaching a destination may take, all its addresses and the upstream's answer included. */
  readonly connectTimeoutMs?: number;
  /** A connection with no traffic either way for this long is ended. */
  readonly idleTimeoutMs?: number;
}

export interface EgressListenOptions {
  readonly sessionId: string;
  /** Called once per CONNECT or proxied request, when it ends; refusals at once. Must not throw (a throw is logged). */
  readonly onEvent: (event: EgressEvent) => void;
}

export interface EgressListener {
  /** Stops listening, ends every live connection of this listener (each reports its event). Idempotent. */
  close(): Promise<void>;
}

export interface EgressProxy {
  /**
   * Serves the proxy on a unix socket (mode 0666: the directory around it decides who reaches it).
   * A stale socket file at socketPath is replaced; any other file there is an error.
   */
  listen(socketPath: string, options: EgressListenOptions): Promise<EgressListener>;
  /** Closes every listener. Idempotent. */
  close(): Promise<void>;
}

interface Upstream {
  readonly host: string;
  readonly port: number;
  readonly headers: Readonly<Record<string, string>>;
}

/** Why an allowed destination could not be reached: an errno or `upstream-<status>`. */
class ReachError extends Error {
  readonly code: string;
  readonly address: string | null;
  constructor(code: string, address: string | null) {
    super(code);
    this.code = code;
    this.address = address;
  }
}

interface Reached {
  readonly socket: Socket;
  readonly address: string | null;
  /** Bytes the upstream sent after its 200: they belong to the tunnel. */
  readonly leftover: Buffer;
}

const defaultConnectTimeoutMs = 10_000;
const defaultIdleTimeoutMs = 5 * 60_000;

// Hop-by-hop headers (RFC 9110 7.6.1), those the client meant for the proxy, and Expect (this
// server already answered it).
const dropped = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect']);

function forwardedHeaders(raw: readonly string[]): string[] {
  const named = new Set<string>();
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === 'connection') for (const token of raw[i + 1]!.split(',')) named.add(token.trim().toLowerCase());
  }
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (dropped.has(name) || named.has(name) || name.startsWith('proxy-')) continue;
    out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}

function upstreamOf(url: URL): Upstream {
  if (url.protocol !== 'http:') throw new Error(`egress upstream: ${url.protocol} is not supported, only http://`);
  const headers: Record<string, string> = {};
  if (url.username !== '' || url.password !== '') {
    const credentials = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
    headers['Proxy-Authorization'] = `Basic ${Buffer.from(credentials).toString('base64')}`;
  }
  return { host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(url.port || 80), headers };
}

/** `host:port` or `[v6]:port` of a CONNECT; null when it is neither. */
function parseAuthority(text: string): { host: string; port: number } | null {
  const match = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:[\]\s/@]+):(\d{1,5})$/.exec(text);
  return match ? { host: match[1]!, port: Number(match[2]) } : null;
}

function refusalStatus(reason: EgressRefusalReason): number {
  return reason === 'resolve-failed' ? 502 : 403;
}

function refusalText(host: string, port: number, decision: Extract<EgressDecision, { allowed: false }>): string {
  const at = decision.address && decision.address !== host ? ` (${decision.address})` : '';
  if (decision.reason === 'resolve-failed') return `porthole egress: cannot resolve ${host}${decision.detail ? ` (${decision.detail})` : ''}\n`;
  return `porthole egress: ${authorityOf(host, port)}${at} refused: ${decision.reason}\n`;
}

/** Connects to host:port within timeoutMs; the socket is handed to track at once so that close() can end it. */
function connectTcp(host: string, port: number, timeoutMs: number, track: (socket: Socket) => void): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    track(socket);
    const settle = (code: string | null) => {
      clearTimeout(timer);
      socket.removeListener('error', onError).removeListener('close', onClose).removeListener('connect', onConnect);
      if (code === null) return resolve(socket);
      socket.destroy();
      reject(new ReachError(code, host));
    };
    const onError = (error: NodeJS.ErrnoException) => settle(error.code ?? 'ECONNRESET');
    const onClose = () => settle('ECONNRESET');
    const onConnect = () => settle(null);
    const timer = setTimeout(() => settle('ETIMEDOUT'), Math.max(timeoutMs, 1));
    socket.once('error', onError).once('close', onClose).once('connect', onConnect);
  });
}

/** Opens a tunnel to host:port through the upstream proxy; its answer must come before the deadline. */
async function connectThroughUpstream(
  upstream: Upstream,
  host: string,
  port: number,
  deadline: number,
  track: (socket: Socket) => void,
): Promise<{ socket: Socket; leftover: Buffer }> {
  let socket: Socket;
  try {
    socket = await connectTcp(upstream.host, upstream.port, deadline - Date.now(), track);
  } catch (error) {
    throw new ReachError(`upstream-${(error as ReachError).code}`, null);
  }
  socket.write(connectRequestHead(host, port, upstream.headers));
  return new Promise((resolve, reject) => {
    let received = Buffer.alloc(0);
    const settle = (failure: string | null, leftover?: Buffer) => {
      clearTimeout(timer);
      // Paused before the listener goes, so that nothing after the head is lost.
      socket.pause();
      socket.removeListener('data', onData).removeListener('error', onError).removeListener('close', onClose);
      if (failure === null) return resolve({ socket, leftover: leftover ?? Buffer.alloc(0) });
      socket.destroy();
      reject(new ReachError(failure, null));
    };
    const onData = (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const head = parseConnectResponseHead(received);
      if (!head) {
        if (received.length > maxConnectResponseHeadBytes) settle('upstream-bad-answer');
      } else if (head.status >= 200 && head.status < 300) {
        settle(null, received.subarray(head.headLength));
      } else {
        settle(head.status === 0 ? 'upstream-bad-answer' : `upstream-${head.status}`);
      }
    };
    const onError = (error: NodeJS.ErrnoException) => settle(`upstream-${error.code ?? 'ECONNRESET'}`);
    const onClose = () => settle('upstream-closed');
    const timer = setTimeout(() => settle('upstream-ETIMEDOUT'), Math.max(deadline - Date.now(), 1));
    socket.on('data', onData).once('error', onError).once('close', onClose);
  });
}

export function createEgressProxy(options: EgressProxyOptions = {}): EgressProxy {
  const policy = createEgressPolicy(options.policy);
  const upstream = options.upstream ? upstreamOf(options.upstream) : null;
  const connectTimeoutMs = options.connectTimeoutMs ?? defaultConnectTimeoutMs;
  const idleTimeoutMs = options.idleTimeoutMs ?? defaultIdleTimeoutMs;
  const listeners = new Set<EgressListener>();

  /** Reaches an allowed destination: directly at its checked addresses in turn, or through the upstream. */
  async function reach(host: string, port: number, decision: Extract<EgressDecision, { allowed: true }>, track: (socket: Socket) => void): Promise<Reached> {
    const deadline = Date.now() + connectTimeoutMs;
    // The loopback exceptions are this host's own services: never asked of the upstream.
    if (upstream && !(decision.address !== null && isLoopbackAddress(decision.address))) {
      try {
        return { ...(await connectThroughUpstream(upstream, decision.address ?? host, port, deadline, track)), address: decision.address };
      } catch (error) {
        throw new ReachError((error as ReachError).code, decision.address);
      }
    }
    let failure = new ReachError('ETIMEDOUT', decision.address);
    for (const { address } of decision.addresses) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      try {
        return { socket: await connectTcp(address, port, left, track), address, leftover: Buffer.alloc(0) };
      } catch (error) {
        failure = error as ReachError;
      }
    }
    throw failure;
  }

  async function listen(socketPath: string, { sessionId, onEvent }: EgressListenOptions): Promise<EgressListener> {
    const log = options.logger?.child({ sessionId });
    const live = new Set<Socket>();
    const track = (socket: Socket) => {
      live.add(socket);
      socket.once('close', () => live.delete(socket));
    };
    const emit = (event: EgressEvent) => {
      log?.debug({ egress: event }, event.allowed ? 'egress ended' : 'egress refused');
      try {
        onEvent(event);
      } catch (error) {
        log?.error({ err: error }, 'egress event handler threw');
      }
    };

    /**
     * The policy's decision on host:port, then the destination reached. A refusal or a destination
     * that cannot be reached is answered (`answer`) and reported (one event) here: null then.
     */
    async function decideAndReach(
      type: EgressEvent['type'],
      host: string,
      port: number,
      answer: (status: number, text: string, header: string) => void,
      durationMs: () => number,
    ): Promise<Reached | null> {
      const decision = await policy.decide(host, port, { viaUpstream: upstream !== null });
      if (!decision.allowed) {
        answer(refusalStatus(decision.reason), refusalText(host, port, decision), `refused; reason=${decision.reason}`);
        emit({
          type,
          host,
          port,
          address: decision.address ?? null,
          allowed: false,
          reason: decision.reason,
          bytesUp: 0,
          bytesDown: 0,
          durationMs: durationMs(),
        });
        return null;
      }
      try {
        return await reach(host, port, decision, track);
      } catch (error) {
        const { code, address } = error as ReachError;
        answer(502, `porthole egress: cannot reach ${authorityOf(host, port)}: ${code}\n`, `failed; error=${code}`);
        emit({ type, host, port, address, allowed: true, error: code, bytesUp: 0, bytesDown: 0, durationMs: durationMs() });
        return null;
      }
    }

    async function onConnect(req: IncomingMessage, client: Socket, head: Buffer): Promise<void> {
      const started = performance.now();
      const durationMs = () => Math.round(performance.now() - started);
      client.on('error', () => client.destroy());
      const answer = (status: number, text: string, header: string) => {
        client.end(
          `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(text)}\r\n` +
            `${egressHeader}: ${header}\r\nConnection: close\r\n\r\n${text}`,
        );
      };
      const target = parseAuthority(req.url ?? '');
      if (!target) {
        answer(400, 'porthole egress: CONNECT needs host:port\n', 'refused; reason=invalid-host');
        emit({
          type: 'egress.connect',
          host: (req.url ?? '').slice(0, 255),
          port: 0,
          address: null,
          allowed: false,
          reason: 'invalid-host',
          bytesUp: 0,
          bytesDown: 0,
          durationMs: durationMs(),
        });
        return;
      }
      const { host, port } = target;
      const reached = await decideAndReach('egress.connect', host, port, answer, durationMs);
      if (!reached) return;
      const remote = reached.socket;
      let bytesUp = head.length;
      let bytesDown = reached.leftover.length;
      let error: string | undefined;
      const ended = () =>
        emit({
          type: 'egress.connect',
          host,
          port,
          address: reached.address,
          allowed: true,
          ...(error ? { error } : {}),
          bytesUp,
          bytesDown,
          durationMs: durationMs(),
        });
      if (client.destroyed) {
        // The sandbox gave up while the destination was being reached: nothing to tunnel.
        remote.destroy();
        error = 'client-closed';
        ended();
        return;
      }
      let open = 2;
      for (const [socket, other] of [
        [client, remote],
        [remote, client],
      ] as const) {
        socket.setTimeout(idleTimeoutMs, () => {
          error ??= 'idle-timeout';
          socket.destroy();
        });
        socket.on('error', (e: NodeJS.ErrnoException) => {
          if (socket === remote) error ??= e.code ?? 'ECONNRESET';
          socket.destroy();
          other.destroy();
        });
        // A side that closed cleanly leaves the other to deliver what it still holds, then close.
        socket.once('close', () => {
          other.end(() => other.destroy());
          if (--open === 0) ended();
        });
      }
      client.on('data', (chunk: Buffer) => (bytesUp += chunk.length));
      remote.on('data', (chunk: Buffer) => (bytesDown += chunk.length));
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (reached.leftover.length > 0) client.write(reached.leftover);
      if (head.length > 0) remote.write(head);
      client.pipe(remote);
      remote.pipe(client);
    }

    async function onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
      const started = performance.now();
      const durationMs = () => Math.round(performance.now() - started);
      const answer = (status: number, text: string, header: string | null) => {
        // The proxy's own answers end the connection: a refused client keeps nothing open here.
        res.shouldKeepAlive = false;
        res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', Connection: 'close', ...(header ? { [egressHeader]: header } : {}) });
        res.end(text);
      };
      let url: URL | null = null;
      try {
        if (/^http:\/\//i.test(req.url ?? '')) url = new URL(req.url!);
      } catch {
        // not a URL: answered below
      }
      if (!url || url.hostname === '') {
        // Not a proxy request (origin-form, or https:// which needs CONNECT): no destination, no event.
        answer(400, 'porthole egress: a proxy request needs an absolute http:// URL; use CONNECT for https\n', null);
        return;
      }
      const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
      const port = Number(url.port || 80);
      const event = { type: 'egress.request', host, port } as const;
      const reached = await decideAndReach('egress.request', host, port, answer, durationMs);
      if (!reached) return;
      const remote = reached.socket;
      if (req.socket.destroyed) {
        // The sandbox gave up while the destination was being reached: nothing to send.
        remote.destroy();
        emit({ ...event, address: reached.address, allowed: true, error: 'client-closed', bytesUp: 0, bytesDown: 0, durationMs: durationMs() });
        return;
      }
      if (reached.leftover.length > 0) remote.unshift(reached.leftover);
      remote.setTimeout(idleTimeoutMs, () => remote.destroy(new ReachError('idle-timeout', reached.address)));
      let bytesUp = 0;
      let bytesDown = 0;
      let error: string | undefined;
      res.once('close', () => {
        remote.destroy();
        if (!res.writableFinished) error ??= 'aborted';
        emit({ ...event, address: reached.address, allowed: true, ...(error ? { error } : {}), bytesUp, bytesDown, durationMs: durationMs() });
      });
      const headers = forwardedHeaders(req.rawHeaders);
      if (!headers.some((_, i) => i % 2 === 0 && headers[i]!.toLowerCase() === 'host')) headers.push('Host', url.host);
      headers.push('Connection', 'close');
      const outgoing = httpRequest({ createConnection: () => remote, method: req.method, path: `${url.pathname}${url.search}`, headers, setHost: false });
      // A tunnel from the upstream arrives paused; the request's own listeners are attached on the next tick, before this resumes.
      remote.resume();
      outgoing.on('error', (e: NodeJS.ErrnoException) => {
        error ??= e.code ?? e.message;
        if (!res.headersSent) answer(502, `porthole egress: ${authorityOf(host, port)} failed: ${error}\n`, `failed; error=${error}`);
        else res.destroy();
      });
      outgoing.on('response', (response) => {
        const out = forwardedHeaders(response.rawHeaders);
        res.writeHead(response.statusCode ?? 502, response.statusMessage, out);
        response.on('data', (chunk: Buffer) => (bytesDown += chunk.length));
        pipeline(response, res, () => {});
      });
      req.on('data', (chunk: Buffer) => (bytesUp += chunk.length));
      pipeline(req, outgoing, () => {});
    }

    await removeStaleSocket(socketPath);
    const server: Server = createServer({ requireHostHeader: false, requestTimeout: 0 });
    server.timeout = idleTimeoutMs;
    server.on('connection', track);
    server.on('connect', (req: IncomingMessage, client: Socket, head: Buffer) => {
      onConnect(req, client, head).catch((error: unknown) => {
        log?.error({ err: error }, 'egress CONNECT failed');
        client.destroy();
      });
    });
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      onRequest(req, res).catch((error: unknown) => {
        log?.error({ err: error }, 'egress request failed');
        res.destroy();
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => {
        server.removeListener('error', reject);
        resolve();
      });
    });
    server.on('error', (error) => log?.error({ err: error }, 'egress listener error'));
    await chmod(socketPath, 0o666);
    log?.debug({ socketPath }, 'egress proxy listening');

    let closing: Promise<void> | null = null;
    const listener: EgressListener = {
      close() {
        closing ??= new Promise<void>((resolve) => {
          listeners.delete(listener);
          server.close(() => resolve());
          for (const socket of live) socket.destroy();
        });
        return closing;
      },
    };
    listeners.add(listener);
    return listener;
  }

  return {
    listen,
    async close() {
      await Promise.all([...listeners].map((l) => l.close()));
    },
  };
}

/** Removes a socket file left by an earlier run; refuses to remove anything else. */
async function removeStaleSocket(socketPath: string): Promise<void> {
  try {
    const stat = await lstat(socketPath);
    if (!stat.isSocket()) throw new Error(`egress proxy: ${socketPath} exists and is not a socket`);
    await unlink(socketPath);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}
