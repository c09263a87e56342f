import type { Logger } from 'pino';
import type { Driver, SandboxHandle } from '../../drivers/driver.js';
import { timeoutSignal } from '../../drivers/endpoint-probes.js';
import { closeFor, endingCodeOf } from '../../protocol/close.js';
import { closeCodeOf } from '../../protocol/errors.js';
import type { CredentialDelivery } from '../../protocol/agent.js';
import type { CredentialVerification } from '../../protocol/credentials.js';
import { AppError, type ErrorCode } from '../../protocol/errors.js';
import { newSessionId, type SandboxId, type SessionId } from '../../protocol/ids.js';
import { isTerminal, type CreateSessionBody, type EndReason, type Session } from '../../protocol/session.js';
import { providers } from '../../providers/index.js';
import type { Store } from '../../store/store.js';
import type { LocalNode } from './local-node.js';
import type { Metrics } from '../metrics.js';
import { bootSession } from './boot.js';
import { Reconciler, sandboxGoneDetail } from './reconciler.js';
import type { SandboxHost } from './sandbox-host.js';
import { SessionTimeouts } from './timeouts.js';
import { transitionSession, type StateChange } from './transition.js';
import type { ViewerRegistry } from './viewer-registry.js';
import { WarmPool } from './warm-pool.js';

/**
 * What the HTTP API needs of sessions: the all-in-one's and a node's SessionManager, or a
 * `porthole server`'s ClusterSessions (src/server/cluster/cluster-sessions.ts).
 */
export type SessionService = Pick<SessionManager, 'create' | 'get' | 'end' | 'complete'>;

export interface SessionManagerOptions {
  store: Store;
  /** The node whose sessions these are: it places the sessions it creates on itself, and reconciles only its own. */
  node: LocalNode;
  driver: Driver;
  viewers: ViewerRegistry;
  logger: Logger;
  desktop: { width: number; height: number; startUrl: string; loopbackOnly?: boolean; leaseMs?: number; tunnels?: readonly { host: string; port: number }[] };
  metrics: Metrics;
  maxSessions: number;
  bootTimeoutMs: number;
  /** A live session with no viewer for this long ends (`idle_timeout`). */
  idleTimeoutMs: number;
  /** A session older than this ends (`max_lifetime`). */
  maxLifetimeMs: number;
  reconcileIntervalMs: number;
  /** Whether a sandbox is a run's (runs/run-manager.ts): the reconciler leaves those alone. */
  isRunSandbox?: (sandboxId: string) => boolean;
  /** For sessions with a provider: where the agent reaches this server, and the demo provider when it runs. */
  login: { serverUrl(): string; demo(): { issuer: string; clientId: string } | undefined };
  /** Serves each sandbox with no network of its own its egress proxy and agent channel (sandbox-host.ts). */
  sandboxHost?: SandboxHost;
  /** Desktops started ahead (warm-pool.ts): how many, and the oldest one kept. Size 0: none. */
  warmPool?: { size: number; maxAgeMs: number };
  /** Where delivered credentials go, sealed. */
  vault: {
    put(
      sessionId: SessionId,
      credential: { provider: string; content: string; expiresAt: string | null; account: string | null; verification: CredentialVerification },
    ): Promise<{ created: boolean }>;
  };
}

/** How long a provider may take to answer for a delivered credential (the demo issuer is on loopback). */
const credentialVerifyTimeoutMs = 10_000;

/**
 * Owns the session lifecycle: create, end, failure, viewer presence and credential completion.
 * Every state change goes through one door, `transitionSession` (transition.ts: the store's
 * compare-and-set, one log line, metric and event each); this class never trusts its own memory
 * over the store. Its parts live beside it: the boot pipeline (boot.ts), the resync with what the
 * driver runs (reconciler.ts) and the idle and lifetime timeouts (timeouts.ts).
 */
export class SessionManager {
  readonly #o: SessionManagerOptions;
  readonly #log: Logger;
  /** Boots in flight, so that ending a starting session stops its boot. */
  readonly #boots = new Map<SessionId, AbortController>();
  /** Sessions still starting whose desktop already answers: viewers may watch the login start. */
  readonly #desktopUp = new Set<SessionId>();
  /** Releases that run after the agent's request was answered (#releaseAfterAnswer). */
  readonly #releasing = new Set<Promise<void>>();
  /** Boots still running: close() waits for them, so a sandbox half-started at shutdown is gone, not left behind. */
  readonly #bootRuns = new Set<Promise<void>>();
  readonly #timeouts: SessionTimeouts;
  readonly #reconciler: Reconciler;
  /** Desktops started ahead; null when PORTHOLE_WARM_POOL is 0. */
  readonly pool: WarmPool | null;
  #closed = false;

  constructor(options: SessionManagerOptions) {
    this.#o = options;
    this.#log = options.logger.child({ component: 'sessions' });
    this.#timeouts = new SessionTimeouts({
      viewers: options.viewers,
      metrics: options.metrics,
      idleTimeoutMs: options.idleTimeoutMs,
      maxLifetimeMs: options.maxLifetimeMs,
      end: (id, reason, detail) => this.end(id, reason, detail),
    });
    const warm = options.warmPool ?? { size: 0, maxAgeMs: 0 };
    this.pool =
      warm.size > 0
        ? new WarmPool({
            store: options.store,
            nodeId: options.node.id,
            driver: options.driver,
            metrics: options.metrics,
            log: this.#log,
            desktop: options.desktop,
            size: warm.size,
            maxAgeMs: warm.maxAgeMs,
            maxSessions: options.maxSessions,
            startTimeoutMs: options.bootTimeoutMs,
            isBusy: () => this.#boots.size > 0,
          })
        : null;
    this.#reconciler = new Reconciler({
      store: options.store,
      driver: options.driver,
      viewers: options.viewers,
      metrics: options.metrics,
      log: this.#log,
      ...(options.sandboxHost ? { sandboxHost: options.sandboxHost } : {}),
      ...(this.pool ? { pool: this.pool } : {}),
      timeouts: this.#timeouts,
      bootTimeoutMs: options.bootTimeoutMs,
      intervalMs: options.reconcileIntervalMs,
      isBooting: (id) => this.#boots.has(id),
      node: options.node,
      isOtherwiseOwned: (sandboxId) => options.isRunSandbox?.(sandboxId) ?? false,
      end: (id, reason, detail) => this.end(id, reason, detail),
      fail: (id, code, detail, details) => this.fail(id, code, detail, details),
      transition: (id, change) => this.#transition(id, change),
    });
  }

  /**
   * `apiKeyId`: the key asking (it alone, and admins, will see the session); null for the dashboard.
   * The all-in-one's create: placed on this node (room under PORTHOLE_MAX_SESSIONS, not draining)
   * in the insert's transaction, then booted here.
   */
  async create(input: CreateSessionBody, apiKeyId: string | null = null): Promise<Session> {
    if (this.#closed) throw new AppError('SERVER_SHUTTING_DOWN');
    this.#o.node.assertInGoodStanding();
    const session = await this.#o.store
      .createSession({ id: newSessionId(), provider: input.provider ?? null, userId: input.userId ?? null, apiKeyId, placement: { only: this.#o.node.id } })
      .catch((error: unknown) => {
        // Full (not draining): this server's own limit, as it has always been named.
        const nodes = error instanceof AppError && error.code === 'NO_CAPACITY' ? (error.details?.nodes as { state: string }[] | undefined) : undefined;
        if (nodes?.every((node) => node.state === 'active')) throw new AppError('TOO_MANY_SESSIONS', { details: { maxSessions: this.#o.maxSessions } });
        throw error;
      });
    this.#log.info({ sessionId: session.id, provider: session.provider, apiKeyId, nodeId: this.#o.node.id }, 'session created');
    this.boot(session);
    return session;
  }

  /**
   * Boots a session placed on this node (by create(), or by a server through the internal hop) in
   * the background. Idempotent: a session already booting, or no longer starting, is left alone.
   */
  boot(session: Session): void {
    const id = session.id;
    if (this.#closed) throw new AppError('SERVER_SHUTTING_DOWN');
    if (this.#boots.has(id) || session.state !== 'starting') return;
    const controller = new AbortController();
    this.#boots.set(id, controller);
    const o = this.#o;
    const run = bootSession(
      {
        store: o.store,
        driver: o.driver,
        metrics: o.metrics,
        log: this.#log,
        desktop: o.desktop,
        bootTimeoutMs: o.bootTimeoutMs,
        login: o.login,
        ...(o.sandboxHost ? { sandboxHost: o.sandboxHost } : {}),
        ...(this.pool ? { pool: this.pool } : {}),
        transition: (sessionId, change) => this.#transition(sessionId, change),
        fail: (sessionId, code, detail, details) => this.fail(sessionId, code, detail, details),
        release: (current) => this.#release(current),
        onDesktopUp: (sessionId) => this.#desktopUp.add(sessionId),
        onReady: (sessionId) => this.#onReady(sessionId),
      },
      session,
      controller.signal,
    ).finally(() => {
      this.#boots.delete(id);
      this.#desktopUp.delete(id);
      this.#bootRuns.delete(run);
      // This session's CLI and page load now; the pool refills after them.
      this.pool?.sessionStarted();
    });
    this.#bootRuns.add(run);
  }

  /**
   * Fencing (membership.ts): the catalog may already count this node lost, so every desktop here
   * goes now — boots stopped, viewers closed with NODE_LOST, sandboxes destroyed — and nothing is
   * written to the store (it may be unreachable; the reaper or the next registration fails the sessions).
   */
  async fenceAll(why: string): Promise<number> {
    for (const [, controller] of this.#boots) controller.abort(new AppError('NODE_FENCED', { message: why }));
    this.#o.viewers.closeEverything(closeCodeOf('NODE_LOST'), 'NODE_LOST');
    const sandboxes = await this.#o.driver.list();
    // At once, without the agent's grace: this node no longer owns them, and they may hold secrets.
    await Promise.allSettled(sandboxes.map((sandbox) => this.#o.driver.destroy(sandbox.id as SandboxId, { now: true })));
    await Promise.allSettled([...this.#bootRuns]);
    this.#log.error({ why, destroyed: sandboxes.length }, 'fenced: every sandbox on this node destroyed');
    return sandboxes.length;
  }

  async get(id: SessionId): Promise<Session> {
    const session = await this.#o.store.getSession(id);
    if (!session) throw new AppError('SESSION_NOT_FOUND', { details: { sessionId: id } });
    return session;
  }

  /** Ends a session for `reason`. Idempotent: a session already in a terminal state is returned as it is. */
  async end(id: SessionId, reason: EndReason, detail: string | null = null): Promise<Session> {
    const session = await this.#transition(id, { to: 'ended', reason, detail });
    await this.#release(session);
    return session;
  }

  /** Marks a session failed, naming the hop and cause, and releases its sandbox. */
  async fail(id: SessionId, code: ErrorCode, detail: string, details: Record<string, unknown> = {}): Promise<Session> {
    const session = await this.#transition(id, { to: 'failed', reason: code, detail, details });
    await this.#release(session);
    return session;
  }

  /**
   * The endpoints of a session's sandbox, or a clear error naming why there are none. A live
   * session whose sandbox has exited ends here (`sandbox_exited`) rather than on the next
   * reconcile tick, and the error is the ended session's code (SESSION_ENDED).
   */
  async sandboxOf(session: Session): Promise<SandboxHandle> {
    this.#assertHere(session);
    if (!session.sandboxId) throw new AppError('SANDBOX_UNREACHABLE', { details: { reason: 'no sandbox recorded' } });
    const info = await this.#o.driver.inspect(session.sandboxId as SandboxId);
    if (info?.status !== 'running') {
      const id = session.id;
      if (!isTerminal(session.state) && !this.#boots.has(id)) {
        const ended = await this.end(id, 'sandbox_exited', sandboxGoneDetail(session, info));
        const ending = endingCodeOf(ended);
        if (ending) throw new AppError(ending, { details: { sandboxId: session.sandboxId, exit: info?.exit ?? null } });
      }
      throw new AppError('SANDBOX_UNREACHABLE', {
        details: { sandboxId: session.sandboxId, status: info?.status ?? 'missing', exit: info?.exit ?? null },
      });
    }
    return info;
  }

  /**
   * Asks the driver whether a session's sandbox still runs, and when it has exited ends the session
   * (`sandbox_exited`) at once, closing its viewers with the ended code, instead of on the next
   * reconcile tick. Returns the session when it is (now) in a terminal state, null while its sandbox
   * runs or it is still booting. The relay calls it when a sandbox's VNC connection drops.
   */
  async endIfSandboxExited(id: SessionId): Promise<Session | null> {
    const session = await this.get(id);
    if (isTerminal(session.state)) return session;
    if (!session.sandboxId || this.#boots.has(id) || !this.#isHere(session)) return null;
    const info = await this.#o.driver.inspect(session.sandboxId as SandboxId);
    if (info?.status === 'running') return null;
    const ended = await this.end(id, 'sandbox_exited', sandboxGoneDetail(session, info));
    return isTerminal(ended.state) ? ended : null;
  }

  /**
   * Whether a session still starting already shows its desktop (its agent and VNC server answered;
   * the sign-in is being started): the relay lets viewers in, so the person sees it come up.
   */
  isDesktopUp(id: SessionId): boolean {
    return this.#desktopUp.has(id);
  }

  /** A viewer attached: the first one moves ready → authenticating. */
  async viewerConnected(id: SessionId, details: Record<string, unknown>): Promise<void> {
    this.#timeouts.stopIdleClock(id);
    await this.#o.store.appendEvent(id, { type: 'viewer.connected', details });
    if (this.#o.viewers.count(id) === 1) await this.#transition(id, { from: 'ready', to: 'authenticating', reason: 'viewer_connected' });
  }

  /** A viewer left: the last one moves authenticating → ready. */
  async viewerDisconnected(id: SessionId, details: Record<string, unknown>): Promise<void> {
    await this.#o.store.appendEvent(id, { type: 'viewer.disconnected', details });
    if (this.#o.viewers.count(id) === 0) {
      this.#timeouts.startIdleClock(id);
      await this.#transition(id, { from: 'authenticating', to: 'ready', reason: 'viewer_left' });
    }
  }

  /**
   * A session a server ended (or failed): its viewers close and its sandbox goes now rather than at
   * the next reconcile. Nothing for a live one.
   */
  async releaseIfOver(id: SessionId): Promise<void> {
    const session = await this.get(id);
    if (isTerminal(session.state)) await this.#release(session);
  }

  /** One reconcile pass (reconciler.ts): at start-up, and what each tick runs. */
  reconcile(): Promise<{ ended: number; destroyed: number }> {
    return this.#reconciler.pass();
  }

  /** Reconciles every `reconcileIntervalMs` until close(), and starts filling the warm pool. */
  startReconciling(): void {
    this.#reconciler.start();
    this.pool?.start();
  }

  /**
   * Stops boots in flight (their sessions fail as shutdown) and the reconciler. Running sandboxes
   * are left running: the next server adopts them through `reconcile()`.
   */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#reconciler.stop();
    await this.pool?.close();
    const booting = [...this.#boots.entries()];
    for (const [, controller] of booting) controller.abort(new AppError('SERVER_SHUTTING_DOWN'));
    await Promise.all(booting.map(([id]) => this.end(id, 'shutdown', 'The server shut down while the session was starting.').catch(() => {})));
    // An aborted boot unwinds its own sandbox (the driver stops a half-started one, a started one is released).
    await Promise.allSettled([...this.#bootRuns]);
    await Promise.allSettled([...this.#releasing]);
  }

  /**
   * A credential the agent delivered (its token already checked): checked again with the
   * provider's validator, then verified — with the provider where porthole can reach it (demo),
   * else offline — sealed and stored, then the session completes, its viewers close with 1000
   * `completed` and the sandbox goes. The account and expiry stored are the verifier's, never the
   * delivery's. A credential that does not verify fails the session (CREDENTIAL_UNVERIFIED); one
   * the provider could not be asked about changes nothing (CREDENTIAL_VERIFY_UNAVAILABLE, 503: the
   * agent delivers again). Idempotent: a second delivery for a completed session stores nothing
   * and says so.
   */
  async complete(id: SessionId, delivery: CredentialDelivery): Promise<{ created: boolean; session: Session }> {
    const session = await this.get(id);
    if (session.provider !== delivery.provider) {
      throw new AppError('PROVIDER_MISMATCH', { details: { session: session.provider, delivered: delivery.provider } });
    }
    const provider = providers[delivery.provider];
    const check = provider.validate(delivery.content);
    if (!check.ok) throw new AppError('CREDENTIAL_INVALID', { details: { waitingFor: check.waitingFor } });
    const ending = endingCodeOf(session);
    if (ending) throw new AppError(ending, { details: { state: session.state, reason: session.reason } });
    const verdict = await provider.verify(delivery.content, {
      demo: this.#o.login.demo(),
      fetch: globalThis.fetch,
      signal: timeoutSignal(credentialVerifyTimeoutMs),
    });
    if (!verdict.ok) {
      if (verdict.isRetryable) throw new AppError('CREDENTIAL_VERIFY_UNAVAILABLE', { details: { reason: verdict.reason } });
      const failed = await this.#transition(id, {
        to: 'failed',
        reason: 'CREDENTIAL_UNVERIFIED',
        detail: `The credential did not verify with the provider: ${verdict.reason}.`,
        details: { provider: delivery.provider, file: delivery.file, reason: verdict.reason },
      });
      // After the answer, as for a completed session: the agent that asked is in the sandbox.
      if (failed.state === 'failed') this.#releaseAfterAnswer(failed);
      this.#log.warn({ sessionId: id, provider: delivery.provider, reason: verdict.reason }, 'delivered credential did not verify');
      throw new AppError('CREDENTIAL_UNVERIFIED', { message: 'The credential did not verify with the provider.', details: { reason: verdict.reason } });
    }
    const { verification, account, expiresAt } = verdict;
    const { created } = await this.#o.vault.put(id, { provider: delivery.provider, content: delivery.content, expiresAt, account, verification });
    const facts = { provider: delivery.provider, account, expiresAt, verification, file: delivery.file };
    if (created) await this.#o.store.appendEvent(id, { type: 'credentials.stored', details: facts });
    const moved = await this.#transition(id, { to: 'completed', reason: 'credentials_captured', details: facts });
    // After the answer: the agent that asked is in the sandbox about to be destroyed.
    this.#releaseAfterAnswer(moved);
    this.#log.info({ sessionId: id, provider: delivery.provider, created, verification }, 'credentials captured');
    return { created, session: moved };
  }

  // ---- internals ----

  /** Whether the session runs on this node (or is from before nodes): only then does this driver know its sandbox. */
  #isHere(session: Session): boolean {
    return session.node === null || session.node.id === this.#o.node.id;
  }

  /**
   * Another node's session (two all-in-ones on one PostgreSQL): its sandbox is not in this driver,
   * and not finding it here says nothing about whether it runs.
   */
  #assertHere(session: Session): void {
    if (this.#isHere(session)) return;
    throw new AppError('NODE_UNREACHABLE', {
      message: `The session runs on the host ${session.node?.id}; this server relays only its own sessions (porthole server relays to any node).`,
      details: { nodeId: session.node?.id, self: this.#o.node.id },
    });
  }

  /** Ready: a viewer that came in while it started makes it authenticating at once; with none, the idle clock starts. */
  async #onReady(id: SessionId): Promise<void> {
    if (this.#o.viewers.count(id) > 0) await this.#transition(id, { from: 'ready', to: 'authenticating', reason: 'viewer_connected' });
    else this.#timeouts.startIdleClock(id);
  }

  /** The one door for a state change (transition.ts). */
  #transition(id: SessionId, change: StateChange): Promise<Session> {
    return transitionSession({ store: this.#o.store, metrics: this.#o.metrics, log: this.#log, fence: () => this.#o.node.fence() }, id, change);
  }

  /**
   * Releases a session once the agent's request has been answered (the agent that asked is in the
   * sandbox about to be destroyed). close() waits for these, so none outlives the server.
   */
  #releaseAfterAnswer(session: Session): void {
    const release = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => this.#release(session))
      .catch((error: unknown) => this.#log.error({ err: error, sessionId: session.id }, `could not release a ${session.state} session`));
    this.#releasing.add(release);
    void release.finally(() => this.#releasing.delete(release));
  }

  /** After a terminal move: stop the boot, close viewers with the session's code, destroy the sandbox. */
  async #release(session: Session): Promise<void> {
    if (!isTerminal(session.state)) return;
    const id = session.id;
    this.#boots.get(id)?.abort(new AppError('SESSION_ENDED'));
    this.#timeouts.stopIdleClock(id);
    await this.#o.sandboxHost?.detach(id);
    const close = closeFor(session);
    if (close) this.#o.viewers.closeAll(id, close.code, close.reason);
    if (session.sandboxId) {
      await this.#o.driver
        .destroy(session.sandboxId as SandboxId)
        .catch((error) => this.#log.error({ err: error, sessionId: id, sandboxId: session.sandboxId }, 'could not destroy sandbox'));
    }
    // Room under PORTHOLE_MAX_SESSIONS again.
    this.pool?.changed();
  }
}
