import { connect, createServer, type Server, type Socket } from 'node:net';
import { connectRequestHead, egressProxyPort, maxConnectResponseHeadBytes, parseConnectResponseHead } from '../protocol/egress.js';

// Inside the sandbox, whose network namespace has only its own loopback: 127.0.0.1:3128 is piped
// raw to porthole's egress proxy on a unix socket (Chromium's --proxy-server, the CLIs'
// HTTPS_PROXY). Each tunnel maps a host service (the demo issuer, 127.0.0.1:45678 on the host) to
// the same address inside the sandbox through a CONNECT, so that its URL reads the same inside and out.

export interface EgressTunnel {
  /** Port on the sandbox's 127.0.0.1 (0 picks a free one). */
  readonly port: number;
  readonly host: string;
  readonly targetPort: number;
}

export interface EgressForwarderOptions {
  /** The egress proxy's unix socket. */
  readonly proxySocket: string;
  /** 0 picks a free port (tests); null serves no proxy port, only the tunnels (a login's, started later). */
  readonly listenPort?: number | null;
  readonly tunnels?: readonly EgressTunnel[];
  /** How long the proxy may take to answer a tunnel's CONNECT. */
  readonly connectTimeoutMs?: number;
}

export interface EgressForwarder {
  /** The bound proxy port; null when none was asked for. */
  readonly port: number | null;
  /** The tunnels with their bound ports. */
  readonly tunnels: readonly EgressTunnel[];
  /** Stops listening and ends every live connection. Idempotent. */
  close(): Promise<void>;
}

function listenOn(server: Server, port: number, what: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(new Error(`egress forwarder: cannot listen on 127.0.0.1:${port} (${what}): ${error.code ?? error.message}`, { cause: error })),
    );
    server.listen(port, '127.0.0.1', () => {
      server.removeAllListeners('error');
      resolve((server.address() as { port: number }).port);
    });
  });
}

/** Pipes two sockets both ways. One failing ends both at once; one closing ends the other once it delivered what it holds. */
function join(a: Socket, b: Socket): void {
  for (const [socket, other] of [
    [a, b],
    [b, a],
  ] as const) {
    socket.on('error', () => {
      socket.destroy();
      other.destroy();
    });
    socket.once('close', () => other.end(() => other.destroy()));
  }
  a.pipe(b);
  b.pipe(a);
}

/** Throws with a message naming the port that could not be bound (the others are closed again). */
export async function startEgressForwarder(options: EgressForwarderOptions): Promise<EgressForwarder> {
  const { proxySocket, listenPort = egressProxyPort, tunnels = [], connectTimeoutMs = 10_000 } = options;
  const live = new Set<Socket>();
  const track = (socket: Socket) => {
    live.add(socket);
    socket.once('close', () => live.delete(socket));
    return socket;
  };

  const proxy = createServer((client) => {
    track(client);
    join(client, track(connect(proxySocket)));
  });

  const openTunnel = (tunnel: EgressTunnel) => (client: Socket) => {
    track(client);
    // Nothing is read from the client until the proxy said 200: its first bytes belong to the tunnel.
    client.pause();
    const upstream = track(connect(proxySocket));
    let received = Buffer.alloc(0);
    const fail = () => {
      clearTimeout(timer);
      upstream.destroy();
      client.destroy();
    };
    const timer = setTimeout(fail, connectTimeoutMs);
    const onData = (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const head = parseConnectResponseHead(received);
      if (!head) {
        if (received.length > maxConnectResponseHeadBytes) fail();
        return;
      }
      if (head.status !== 200) return fail();
      clearTimeout(timer);
      upstream.pause();
      upstream.removeListener('data', onData).removeListener('error', fail).removeListener('close', fail);
      client.removeListener('error', fail).removeListener('close', fail);
      const rest = received.subarray(head.headLength);
      if (rest.length > 0) client.write(rest);
      join(client, upstream);
    };
    upstream.once('connect', () => upstream.write(connectRequestHead(tunnel.host, tunnel.targetPort)));
    upstream.on('data', onData).once('error', fail).once('close', fail);
    client.once('error', fail).once('close', fail);
  };

  const servers: Server[] = [];
  const bound: EgressTunnel[] = [];
  let closing: Promise<void> | null = null;
  const close = () => {
    closing ??= (async () => {
      const closed = Promise.all(servers.map((server) => new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve()))));
      for (const socket of live) socket.destroy();
      await closed;
    })();
    return closing;
  };
  try {
    let port: number | null = null;
    if (listenPort !== null) {
      servers.push(proxy);
      port = await listenOn(proxy, listenPort, 'egress proxy');
    }
    for (const tunnel of tunnels) {
      const server = createServer(openTunnel(tunnel));
      servers.push(server);
      bound.push({ ...tunnel, port: await listenOn(server, tunnel.port, `tunnel to ${tunnel.host}:${tunnel.targetPort}`) });
    }
    return { port, tunnels: bound, close };
  } catch (error) {
    await close();
    throw error;
  }
}
