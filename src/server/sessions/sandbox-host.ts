import { chmod, lstat, unlink } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { SandboxHandle } from '../../drivers/driver.js';
import { errorRegistry, type ErrorBody } from '../../protocol/errors.js';
import type { RunId, SessionId } from '../../protocol/ids.js';
import type { EgressListener, EgressProxy } from '../egress/egress-proxy.js';
import type { Store } from '../../store/store.js';

// What the server serves *for* one sandbox that has no network of its own, on the unix sockets
// its driver names (SandboxHandle.host), inside a directory only porthole writes and the sandbox
// sees read-only:
//   proxy.sock   the egress proxy: the sandbox's only way out, each connection decided by policy
//                and recorded on the session's timeline (egress.connect / egress.request);
//   server.sock  the agent channel: the sandbox's only way to porthole, which answers nothing but
//                this session's own agent routes (/v1/agent/sessions/<id>/…) — not the API, not
//                /metrics, not another session's routes.
// The sockets live as long as the session is live in *this* server: attached after create and on
// adoption after a restart (the files of the previous server are replaced), detached when the
// session ends or the server closes.

/** Whose sandbox: a session's, or a run's (runs/run-manager.ts). */
export type SandboxOwnerId = SessionId | RunId;

/** Where a sandbox's egress events go; by default the session's timeline. */
export type EgressRecorder = (event: { type: 'egress.connect' | 'egress.request'; details: Record<string, unknown> }) => Promise<unknown>;

export interface SandboxHost {
  /** Serves the sandbox's proxy and agent channel. Idempotent; a no-op for a sandbox with a network of its own. */
  attach(ownerId: SandboxOwnerId, handle: SandboxHandle, record?: EgressRecorder): Promise<void>;
  /** Stops serving them. Idempotent. */
  detach(ownerId: SandboxOwnerId): Promise<void>;
  isAttached(ownerId: SandboxOwnerId): boolean;
  close(): Promise<void>;
}

interface Attached {
  readonly proxy: EgressListener;
  readonly channel: Server;
}

export function createSandboxHost(options: {
  egress: EgressProxy;
  /** The API's request handler (Fastify's router): agent-channel requests that pass the path check go to it. */
  route: (req: IncomingMessage, res: ServerResponse) => void;
  store: Pick<Store, 'appendEvent'>;
  logger: Logger;
}): SandboxHost {
  const log = options.logger.child({ component: 'sandbox-host' });
  const attached = new Map<SandboxOwnerId, Attached>();
  const attaching = new Map<SandboxOwnerId, Promise<void>>();
  /** Egress events being written: detach and close wait for them, so none lands after the store closes. */
  const recording = new Set<Promise<unknown>>();

  async function attach(sessionId: SandboxOwnerId, handle: SandboxHandle, record?: EgressRecorder): Promise<void> {
    if (!handle.host || attached.has(sessionId)) return;
    const running = attaching.get(sessionId);
    if (running) return running;
    const host = handle.host;
    const work = (async () => {
      const proxy = await options.egress.listen(host.proxySocket, {
        sessionId,
        onEvent: (event) => {
          const { type, ...details } = event;
          const write = (record ? record({ type, details }) : options.store.appendEvent(sessionId as SessionId, { type, details })).catch((error: unknown) =>
            log.warn({ err: error, sessionId }, 'could not record an egress event'),
          );
          recording.add(write);
          void write.finally(() => recording.delete(write));
        },
      });
      try {
        const channel = await serveChannel(sessionId, host.serverSocket);
        attached.set(sessionId, { proxy, channel });
      } catch (error) {
        await proxy.close();
        throw error;
      }
    })();
    attaching.set(sessionId, work);
    try {
      await work;
    } finally {
      attaching.delete(sessionId);
    }
  }

  async function serveChannel(sessionId: SandboxOwnerId, socketPath: string): Promise<Server> {
    const prefix = `/v1/agent/sessions/${sessionId}/`;
    const channel = createServer((req, res) => {
      // Only this session's agent routes, only POST: anything else is not there.
      if (req.method !== 'POST' || !req.url?.startsWith(prefix) || req.url.includes('..')) {
        const body: ErrorBody = { error: { code: 'ROUTE_NOT_FOUND', message: errorRegistry.ROUTE_NOT_FOUND.message } };
        res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify(body));
        return;
      }
      options.route(req, res);
    });
    channel.headersTimeout = 10_000;
    channel.requestTimeout = 30_000;
    await removeStaleSocket(socketPath);
    await new Promise<void>((resolve, reject) => {
      channel.once('error', reject);
      channel.listen(socketPath, () => {
        channel.off('error', reject);
        resolve();
      });
    });
    // The sandbox's uid must be able to connect; the directory (porthole's, read-only inside) decides who can reach it.
    await chmod(socketPath, 0o666);
    return channel;
  }

  async function detach(sessionId: SandboxOwnerId): Promise<void> {
    await attaching.get(sessionId)?.catch(() => {});
    const entry = attached.get(sessionId);
    if (!entry) return;
    attached.delete(sessionId);
    entry.channel.closeAllConnections();
    await Promise.all([entry.proxy.close(), new Promise<void>((resolve) => entry.channel.close(() => resolve()))]);
    // The connections the close ended report their events: written before detach returns.
    await Promise.allSettled([...recording]);
  }

  return {
    attach,
    detach,
    isAttached: (sessionId) => attached.has(sessionId),
    async close() {
      await Promise.all([...attached.keys()].map(detach));
    },
  };
}

/** A socket file left by an earlier server is replaced; anything else at that path is an error. */
async function removeStaleSocket(path: string): Promise<void> {
  const stats = await lstat(path).catch(() => null);
  if (!stats) return;
  if (!stats.isSocket()) throw new Error(`${path} exists and is not a socket`);
  await unlink(path);
}
