import type { Logger } from 'pino';
import type { CredentialDelivery } from '../../protocol/agent.js';
import { AppError } from '../../protocol/errors.js';
import { newSessionId, type SessionId } from '../../protocol/ids.js';
import { isTerminal, type CreateSessionBody, type EndReason, type Session } from '../../protocol/session.js';
import type { Store } from '../../store/store.js';
import type { Metrics } from '../metrics.js';
import { transitionSession } from '../sessions/transition.js';
import type { NodeClient } from './node-client.js';

// A `porthole server`'s sessions: it runs no sandbox. Creating one places it on a node (one
// transaction: Store.createSession with placement) and asks that node to boot it; ending one
// moves it in the store and asks its node to let go of the desktop at once (the node's reconcile
// is the backstop). Everything else a session does happens on its node.

export interface ClusterSessionsOptions {
  store: Store;
  nodes: NodeClient;
  metrics: Metrics;
  log: Logger;
}

export class ClusterSessions {
  readonly #o: ClusterSessionsOptions;
  readonly #log: Logger;

  constructor(options: ClusterSessionsOptions) {
    this.#o = options;
    this.#log = options.log.child({ component: 'sessions' });
  }

  async create(input: CreateSessionBody, apiKeyId: string | null = null): Promise<Session> {
    const o = this.#o;
    const session = await o.store.createSession({
      id: newSessionId(),
      provider: input.provider ?? null,
      userId: input.userId ?? null,
      apiKeyId,
      placement: {},
    });
    const node = session.node ? await o.store.getNode(session.node.id) : null;
    this.#log.info({ sessionId: session.id, provider: session.provider, apiKeyId, nodeId: node?.id }, 'session created');
    try {
      if (!node) throw new AppError('NODE_UNREACHABLE', { message: 'The session was placed on a node the catalog no longer has.' });
      await o.nodes.boot(node, session.id);
    } catch (error) {
      const failure = error instanceof AppError ? error : new AppError('NODE_UNREACHABLE', { cause: error });
      this.#log.warn({ err: failure, sessionId: session.id, nodeId: node?.id }, 'the node did not take the session');
      return this.#transition(session.id, {
        to: 'failed',
        reason: failure.code,
        detail: `porthole could not start the desktop on the host ${node?.id ?? '(none)'}: ${failure.message}`,
        details: { nodeId: node?.id ?? null, ...(failure.details ?? {}) },
      });
    }
    return session;
  }

  async get(id: SessionId): Promise<Session> {
    const session = await this.#o.store.getSession(id);
    if (!session) throw new AppError('SESSION_NOT_FOUND', { details: { sessionId: id } });
    return session;
  }

  async end(id: SessionId, reason: EndReason, detail: string | null = null): Promise<Session> {
    const session = await this.#transition(id, { to: 'ended', reason, detail });
    if (isTerminal(session.state) && session.node) {
      const node = await this.#o.store.getNode(session.node.id);
      // At once rather than at the node's next reconcile: its viewers close, its desktop goes.
      if (node && node.state !== 'dead') {
        await this.#o.nodes
          .release(node, id)
          .catch((error: unknown) => this.#log.warn({ err: error, sessionId: id, nodeId: node.id }, 'could not tell the node to release the session'));
      }
    }
    return session;
  }

  /** Agents deliver to their own node, never to a server. */
  complete(_id: SessionId, _delivery: CredentialDelivery): Promise<{ created: boolean; session: Session }> {
    return Promise.reject(new AppError('ROUTE_NOT_FOUND', { message: 'Credentials are delivered to the node that runs the sandbox, not to a server.' }));
  }

  #transition(id: SessionId, change: Parameters<typeof transitionSession>[2]): Promise<Session> {
    return transitionSession({ store: this.#o.store, metrics: this.#o.metrics, log: this.#log }, id, change);
  }
}
