import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { AppError } from '../../protocol/errors.js';
import { isSessionId, type SessionId } from '../../protocol/ids.js';
import type { Session } from '../../protocol/session.js';
import type { Store } from '../../store/store.js';
import { internalAuthHeader, type ClusterKey } from '../cluster/cluster-key.js';
import type { NodeMembership } from '../cluster/membership.js';
import type { DiagnoseSession } from '../sessions/diagnosis.js';
import type { SessionManager } from '../sessions/session-manager.js';
import type { RunManager } from '../runs/run-manager.js';
import { createRunBody } from '../../protocol/runs.js';
import type { RunId } from '../../protocol/ids.js';

// The node's side of the internal hop (src/server/cluster/node-client.ts is the server's): boot a
// session placed here, release one a server ended, walk a session's hops. Every request must be
// signed with the cluster key, and a session must be placed on this node under its current
// generation: a server with a stale view gets NODE_FENCED, never a desktop of someone else's.

export interface InternalRouteDeps {
  key: ClusterKey;
  membership: NodeMembership;
  sessions: SessionManager;
  store: Store;
  diagnose: DiagnoseSession;
  runs: RunManager;
}

export function registerInternalRoutes(app: FastifyInstance<Server, IncomingMessage, ServerResponse, Logger>, deps: InternalRouteDeps): void {
  app.addHook('onRequest', async (request) => {
    const path = request.url.split('?')[0] ?? '';
    if (!path.startsWith('/internal/')) return;
    const signature = request.headers[internalAuthHeader];
    deps.key.verify(Array.isArray(signature) ? signature[0] : signature, request.method, path);
  });

  /** The session, when it is placed on this node under the generation this node holds. */
  const placedHere = async (rawId: string): Promise<Session> => {
    if (!isSessionId(rawId)) throw new AppError('SESSION_NOT_FOUND', { details: { sessionId: rawId } });
    const session = await deps.store.getSession(rawId as SessionId);
    if (!session) throw new AppError('SESSION_NOT_FOUND', { details: { sessionId: rawId } });
    const self = deps.membership.fence();
    if (session.node?.id !== self.nodeId || session.node.generation !== self.generation) {
      throw new AppError('NODE_FENCED', {
        message: `That session is placed on ${session.node ? `${session.node.id} generation ${session.node.generation}` : 'no node'}, not on ${self.nodeId} generation ${self.generation}.`,
        details: { sessionId: session.id, node: session.node, self },
      });
    }
    return session;
  };

  app.post<{ Params: { id: string } }>('/internal/v1/sessions/:id/boot', async (request, reply) => {
    deps.membership.assertInGoodStanding();
    const session = await placedHere(request.params.id);
    deps.sessions.boot(session);
    return reply.status(202).header('cache-control', 'no-store').send({ accepted: true, sessionId: session.id });
  });

  app.post<{ Params: { id: string } }>('/internal/v1/sessions/:id/release', async (request, reply) => {
    const session = await placedHere(request.params.id);
    await deps.sessions.releaseIfOver(session.id);
    return reply.header('cache-control', 'no-store').send({ released: true, sessionId: session.id });
  });

  app.post<{ Params: { id: string } }>('/internal/v1/sessions/:id/diagnose', async (request, reply) => {
    const session = await placedHere(request.params.id);
    // A node's port takes no viewers: the server that asked walks the relay hop through its edge relay.
    const diagnosis = await deps.diagnose(session.id, { serverUrl: null });
    return reply.header('cache-control', 'no-store').send(diagnosis);
  });

  app.post<{ Body: { body?: unknown; apiKeyId?: unknown } }>('/internal/v1/runs', async (request, reply) => {
    deps.membership.assertInGoodStanding();
    const parsed = createRunBody.safeParse(request.body?.body);
    if (!parsed.success) throw new AppError('VALIDATION_FAILED', { message: `Invalid run: ${parsed.error.message}` });
    const apiKeyId = typeof request.body?.apiKeyId === 'string' ? request.body.apiKeyId : null;
    const run = await deps.runs.create(parsed.data, apiKeyId);
    return reply.status(201).header('cache-control', 'no-store').send(run);
  });

  app.post<{ Params: { id: string } }>('/internal/v1/runs/:id/cancel', async (request, reply) => {
    const run = await deps.runs.cancel(request.params.id as RunId);
    return reply.header('cache-control', 'no-store').send(run);
  });
}
