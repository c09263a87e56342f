import { createHash, randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Driver, SandboxHandle, SandboxInfo } from '../../drivers/driver.js';
import { fetchAgentHealth, readRfbBanner, startAgentLogin, timeoutSignal } from '../../drivers/endpoint-probes.js';
import type { CredentialDelivery } from '../../protocol/agent.js';
import type { CredentialVerification } from '../../protocol/credentials.js';
import { AppError, closeCodeOf, type ErrorCode } from '../../protocol/errors.js';
import { newSandboxId, newSessionId, type SandboxId, type SessionId } from '../../protocol/ids.js';
import {
  canTransition,
  isTerminal,
  startStepLabels,
  type CreateSessionBody,
  type EndReason,
  type Session,
  type SessionState,
  type StartStep,
} from '../../protocol/session.js';
import { version } from '../../protocol/version.js';
import { providers } from '../../providers/index.js';
import type { Store } from '../../store/store.js';
import type { Metrics } from '../metrics.js';
import type { SandboxHost } from './sandbox-host.js';
import type { ViewerRegistry } from './viewer-registry.js';

export interface SessionManagerOptions {
  store: Store;
  driver: Driver;
  viewers: ViewerRegistry;
  logger: Logger;
  desktop: { width: number; height: number; startUrl: string; loopbackOnly?: boolean; leaseMs?: number };
  metrics: Metrics;
  maxSessions: number;
  bootTimeoutMs: number;
  /** A live session with no viewer for this long ends (`idle_timeout`). */
  idleTimeoutMs: number;
  /** A session older than this ends (`max_lifetime`). */
  maxLifetimeMs: number;
  reconcileIntervalMs: number;
  /** For sessions with a provider: where the agent reaches this server, and the demo provider when it runs. */
  login: { serverUrl(): string; demo(): { issuer: string; clientId: string } | undefined };
  /** Serves each sandbox with no network of its own its egress proxy and agent channel (sandbox-host.ts). */
  sandboxHost?: SandboxHost;
  /** Where delivered credentials go, sealed. */
  vault: { put(sessionId: SessionId, credential: { provider: string; content: string; expiresAt: string | null; account: string | null; verification: CredentialVerification }): Promise<{ created: boolean }> };
}

/** The server keeps only this of a sandbox token. */
export function hashAgentToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

const liveStates: readonly SessionState[] = ['starting', 'ready', 'authenticating'];
const probeIntervalMs = 100;
/** How long a provider may take to answer for a delivered credential (the demo issuer is on loopback). */
const credentialVerifyTimeoutMs = 10_000;

/** A start-up step that did not answer: carries the step so the failure names its hop. */
class StepError extends Error {
  constructor(
    readonly step: StartStep,
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The close code a viewer gets when its session reaches a terminal state: each ending its own. */
export function closeReasonOf(session: Pick<Session, 'state' | 'reason'>): ErrorCode {
  if (session.state === 'failed') return 'SESSION_FAILED';
  if (session.reason === 'idle_timeout') return 'SESSION_IDLE_TIMEOUT';
  if (session.reason === 'max_lifetime') return 'SESSION_EXPIRED';
  return 'SESSION_ENDED';
}

/** The detail of a session ended because its sandbox is not running: exited (and how) or gone. */
function sandboxGoneDetail(session: Session, sandbox: SandboxInfo | null): string {
  if (sandbox) return `The sandbox ${sandbox.id} exited${sandbox.exit ? ` (${sandbox.exit})` : ''}.`;
  return session.state === 'starting' ? 'The server stopped while this session was starting.' : `The sandbox ${session.sandboxId ?? ''} is gone.`;
}

function describeCause(error: unknown): string {
  if (error instanceof AppError && error.cause) return `${error.code}: ${describeCause(error.cause)}`;
  const errno = (error as NodeJS.ErrnoException | undefined)?.code;
  const message = error instanceof Error ? error.message : String(error);
  return errno && !message.includes(errno) ? `${errno} ${message}` : message;
}

/**
 * Owns the session lifecycle: boot (sandbox → agent → VNC → ready), end, failure, viewer presence
 * and the resync with what the driver really runs. Every state change goes through the store's
 * compare-and-set transition; this class never trusts its own memory over the store.
 */
export class SessionManager {
  readonly #o: SessionManagerOptions;
  readonly #log: Logger;
  /** Boots in flight, so that ending a starting session stops its boot. */
  readonly #boots = new Map<SessionId, AbortController>();
  /** Since when each live session has had no viewer (absent while one is connected). In memory: after a restart the clock starts again. */
  readonly #idleSince = new Map<SessionId, number>();
  #reconcileTimer: NodeJS.Timeout | null = null;
  /** The reconcile pass under way, which close() waits for. */
  #reconciling: Promise<void> | null = null;
  #closed = false;

  constructor(options: SessionManagerOptions) {
    this.#o = options;
    this.#log = options.logger.child({ component: 'sessions' });
  }

  async create(input: CreateSessionBody): Promise<Session> {
    if (this.#closed) throw new AppError('SERVER_SHUTTING_DOWN');
    const live = await this.#o.store.listSessions({ states: liveStates, limit: this.#o.maxSessions + 1 });
    if (live.length >= this.#o.maxSessions) {
      throw new AppError('TOO_MANY_SESSIONS', { details: { maxSessions: this.#o.maxSessions } });
    }
    const session = await this.#o.store.createSession({
      id: newSessionId(),
      provider: input.provider ?? null,
      userId: input.userId ?? null,
    });
    this.#log.info({ sessionId: session.id, provider: session.provider }, 'session created');
    const controller = new AbortController();
    this.#boots.set(session.id as SessionId, controller);
    void this.#boot(session, controller.signal).finally(() => this.#boots.delete(session.id as SessionId));
    return session;
  }

  async get(id: SessionId): Promise<Session> {
    const session = await this.#o.store.getSession(id);
    if (!session) throw new AppError('SESSION_NOT_FOUND', { details: { sessionId: id } });
    return session;
  }

  /** Ends a session for `reason`. Idempotent: a session already in a terminal state is returned as it is. */
  async end(id: SessionId, reason: EndReason, detail: string | null = null): Promise<Session> {
    const session = await this.#move(id, 'ended', reason, detail);
    await this.#release(session);
    return session;
  }

  /** Marks a session failed, naming the hop and cause, and releases its sandbox. */
  async fail(id: SessionId, code: ErrorCode, detail: string, details: Record<string, unknown> = {}): Promise<Session> {
    const session = await this.#move(id, 'failed', code, detail, details);
    await this.#release(session);
    return session;
  }

  /**
   * The endpoints of a session's sandbox, or a clear error naming why there are none. A live
   * session whose sandbox has exited ends here (`sandbox_exited`) rather than on the next
   * reconcile tick, and the error is the ended session's code (SESSION_ENDED).
   */
  async sandboxOf(session: Session): Promise<SandboxHandle> {
    if (!session.sandboxId) throw new AppError('SANDBOX_UNREACHABLE', { details: { reason: 'no sandbox recorded' } });
    const info = await this.#o.driver.inspect(session.sandboxId as SandboxId);
    if (!info || info.status !== 'running') {
      const id = session.id as SessionId;
      if (!isTerminal(session.state) && !this.#boots.has(id)) {
        const ended = await this.end(id, 'sandbox_exited', sandboxGoneDetail(session, info));
        if (isTerminal(ended.state) && ended.state !== 'completed') throw new AppError(closeReasonOf(ended), { details: { sandboxId: session.sandboxId, exit: info?.exit ?? null } });
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
    if (!session.sandboxId || this.#boots.has(id)) return null;
    const info = await this.#o.driver.inspect(session.sandboxId as SandboxId);
    if (info?.status === 'running') return null;
    const ended = await this.end(id, 'sandbox_exited', sandboxGoneDetail(session, info));
    return isTerminal(ended.state) ? ended : null;
  }

  /** A viewer attached: the first one moves ready → authenticating. */
  async viewerConnected(id: SessionId, details: Record<string, unknown>): Promise<void> {
    this.#idleSince.delete(id);
    await this.#o.store.appendEvent(id, { type: 'viewer.connected', details });
    if (this.#o.viewers.count(id) === 1) await this.#moveIf(id, 'ready', 'authenticating', 'viewer_connected');
  }

  /** A viewer left: the last one moves authenticating → ready. */
  async viewerDisconnected(id: SessionId, details: Record<string, unknown>): Promise<void> {
    await this.#o.store.appendEvent(id, { type: 'viewer.disconnected', details });
    if (this.#o.viewers.count(id) === 0) {
      this.#idleSince.set(id, Date.now());
      await this.#moveIf(id, 'authenticating', 'ready', 'viewer_left');
    }
  }

  /**
   * Brings the store in line with what the driver runs: a live session whose sandbox is gone ends
   * (`sandbox_exited`); a sandbox no live session owns is destroyed; a running one is adopted. Then
   * the timeouts: max lifetime, and idle (no viewer). Sessions still booting are left to their boot
   * and its own deadline. Runs at start-up and then every `reconcileIntervalMs`.
   */
  async reconcile(): Promise<{ ended: number; destroyed: number }> {
    const [sessions, sandboxes] = await Promise.all([
      this.#o.store.listSessions({ states: liveStates, limit: 10_000 }),
      this.#o.driver.list(),
    ]);
    const byId = new Map(sandboxes.map((s) => [s.id as string, s]));
    const owned = new Set<string>();
    let ended = 0;
    let destroyed = 0;
    for (const session of sessions) {
      if (session.sandboxId) owned.add(session.sandboxId);
      if (this.#boots.has(session.id as SessionId)) continue;
      const sandbox = session.sandboxId ? byId.get(session.sandboxId) : undefined;
      if (sandbox?.limitReached) {
        // The kernel killed or refused something in it: what is left of the desktop is not whole.
        const limit = sandbox.limitReached;
        await this.fail(session.id as SessionId, 'SANDBOX_LIMIT_REACHED', `${limit.charAt(0).toUpperCase()}${limit.slice(1)}; porthole closed it. Start a new session.`, { limit }).catch((error) =>
          this.#log.warn({ err: error, sessionId: session.id }, 'reconcile: could not fail session'),
        );
        this.#o.metrics.reconcilerActions.inc({ action: 'limit_reached' });
        ended++;
        continue;
      }
      if (sandbox?.status === 'running') {
        // A sandbox adopted after a restart (or whose listeners failed) gets its proxy and channel back.
        if (sandbox.host && !this.#o.sandboxHost?.isAttached(session.id as SessionId)) {
          await this.#o.sandboxHost?.attach(session.id as SessionId, sandbox).catch((error: unknown) => this.#log.warn({ err: error, sessionId: session.id }, 'reconcile: could not serve the sandbox its egress proxy and agent channel'));
        }
        // Renews the sandbox's lease (the agent ends a sandbox whose server is gone for good).
        void fetchAgentHealth(sandbox.agent, { timeoutMs: 2_000 }).catch(() => {});
        if (await this.#checkTimeouts(session)) ended++;
        continue;
      }
      await this.end(session.id as SessionId, 'sandbox_exited', sandboxGoneDetail(session, sandbox ?? null)).catch((error) =>
        this.#log.warn({ err: error, sessionId: session.id }, 'reconcile: could not end session'),
      );
      this.#o.metrics.reconcilerActions.inc({ action: 'ended' });
      ended++;
    }
    for (const sandbox of sandboxes) {
      if (owned.has(sandbox.id)) continue;
      this.#log.info({ sandboxId: sandbox.id }, 'reconcile: destroying sandbox that no live session owns');
      await this.#o.driver.destroy(sandbox.id as SandboxId);
      this.#o.metrics.reconcilerActions.inc({ action: 'destroyed' });
      destroyed++;
    }
    return { ended, destroyed };
  }

  startReconciling(): void {
    const tick = () => {
      this.#reconciling = this.reconcile()
        .then(() => undefined)
        .catch((error) => this.#log.warn({ err: error }, 'reconcile failed; retrying'))
        .finally(() => {
          this.#reconciling = null;
          if (!this.#closed) this.#reconcileTimer = setTimeout(tick, this.#o.reconcileIntervalMs).unref();
        });
    };
    this.#reconcileTimer = setTimeout(tick, this.#o.reconcileIntervalMs).unref();
  }

  /** For a live session whose sandbox runs: adopt it if new to this process, then apply the timeouts. Returns whether it ended. */
  async #checkTimeouts(session: Session): Promise<boolean> {
    const id = session.id as SessionId;
    const now = Date.now();
    const viewers = this.#o.viewers.count(id);
    if (viewers === 0 && !this.#idleSince.has(id)) {
      // First seen by this process (a restart): adopt it. Viewer counts live in memory, so nobody is
      // connected until they reconnect, and the idle clock starts now.
      this.#idleSince.set(id, now);
      if (session.state === 'authenticating') await this.#moveIf(id, 'authenticating', 'ready', 'no_viewer');
      this.#log.info({ sessionId: id, sandboxId: session.sandboxId }, 'reconcile: adopted running sandbox');
      this.#o.metrics.reconcilerActions.inc({ action: 'adopted' });
    }
    const ageMs = now - Date.parse(session.createdAt);
    if (ageMs >= this.#o.maxLifetimeMs) {
      await this.end(id, 'max_lifetime', `The session reached its maximum lifetime of ${Math.round(this.#o.maxLifetimeMs / 1000)} s.`);
      this.#o.metrics.reconcilerActions.inc({ action: 'max_lifetime' });
      return true;
    }
    const idleSince = this.#idleSince.get(id);
    if (viewers === 0 && idleSince !== undefined && now - idleSince >= this.#o.idleTimeoutMs) {
      await this.end(id, 'idle_timeout', `No viewer was connected for ${Math.round(this.#o.idleTimeoutMs / 1000)} s.`);
      this.#o.metrics.reconcilerActions.inc({ action: 'idle_timeout' });
      return true;
    }
    return false;
  }

  /**
   * Stops boots in flight (their sessions fail as shutdown) and the reconciler. Running sandboxes
   * are left running: the next server adopts them through `reconcile()`.
   */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#reconcileTimer) clearTimeout(this.#reconcileTimer);
    await this.#reconciling;
    const booting = [...this.#boots.entries()];
    for (const [, controller] of booting) controller.abort(new AppError('SERVER_SHUTTING_DOWN'));
    await Promise.all(
      booting.map(([id]) => this.end(id, 'shutdown', 'The server shut down while the session was starting.').catch(() => {})),
    );
  }

  // ---- internals ----

  async #boot(session: Session, signal: AbortSignal): Promise<void> {
    const id = session.id as SessionId;
    const log = this.#log.child({ sessionId: id });
    const deadline = AbortSignal.any([signal, timeoutSignal(this.#o.bootTimeoutMs)]);
    let step: StartStep = 'sandbox';
    const bootStarted = performance.now();
    let lastError: unknown = null;
    const run = async <T>(name: StartStep, work: () => Promise<T>): Promise<T> => {
      step = name;
      lastError = null;
      const started = performance.now();
      await this.#o.store.appendEvent(id, { type: 'step.started', details: { step: name } });
      const result = await work();
      const ms = Math.round(performance.now() - started);
      this.#o.metrics.startStepSeconds.observe({ step: name, outcome: 'ok' }, ms / 1000);
      await this.#o.store.appendEvent(id, { type: 'step.succeeded', details: { step: name, ms } });
      log.info({ step: name, ms }, 'start-up step done');
      return result;
    };
    /** Retries a probe until it answers or the deadline passes, remembering the last error for the failure. */
    const until = async <T>(probe: () => Promise<T>): Promise<T> => {
      for (;;) {
        deadline.throwIfAborted();
        try {
          return await probe();
        } catch (error) {
          if (error instanceof StepError) throw error;
          if (deadline.aborted) throw deadline.reason;
          lastError = error;
        }
        await new Promise((resolve) => setTimeout(resolve, probeIntervalMs));
      }
    };

    try {
      const sandboxId = newSandboxId();
      const handle = await run('sandbox', async () => {
        await this.#o.store.setSandbox(id, sandboxId);
        const created = await this.#o.driver.create({ id: sandboxId, ...this.#o.desktop }, { signal: deadline });
        await this.#o.sandboxHost?.attach(id, created);
        return created;
      });
      await run('agent', () =>
        until(async () => {
          const health = await fetchAgentHealth(handle.agent, { signal: deadline, timeoutMs: 2_000 });
          if (health.version !== version) {
            throw new StepError('agent', 'AGENT_VERSION_MISMATCH', `The sandbox agent runs version ${health.version}; the server runs ${version}.`);
          }
          if (!health.healthy) {
            const down = health.processes.filter((p) => !p.running).map((p) => `${p.name}${p.lastExit ? ` (${p.lastExit})` : ''}`);
            throw new Error(`agent reports not healthy: ${down.join(', ') || 'desktop still starting'}`);
          }
          return health;
        }),
      );
      await run('vnc', () =>
        until(async () => {
          const banner = await readRfbBanner(handle.vnc, { signal: deadline, timeoutMs: 2_000 });
          if (!banner.startsWith('RFB ')) throw new Error(`not an RFB server: banner ${JSON.stringify(banner)}`);
          return banner;
        }),
      );
      const provider = session.provider;
      if (provider !== null) await run('login', () => this.#startLogin(id, provider, handle, deadline));
      const current = await this.get(id);
      const ready = await this.#o.store.transition(id, {
        from: current.state,
        to: 'ready',
        expectVersion: current.version,
        reason: 'desktop_answered',
      });
      this.#idleSince.set(id, Date.now());
      this.#o.metrics.transitions.inc({ to: 'ready', reason: 'desktop_answered' });
      log.info({ sandboxId, state: ready.state }, 'session ready');
    } catch (error) {
      if (signal.aborted) {
        // Ended meanwhile (user, shutdown): end() already moved the state; make sure the sandbox goes.
        const current = await this.#o.store.getSession(id).catch(() => null);
        if (current) await this.#release(current);
        return;
      }
      const stepError = error instanceof StepError ? error : null;
      const timedOut = !stepError && deadline.aborted;
      const code: ErrorCode = stepError?.code ?? (timedOut ? 'BOOT_TIMEOUT' : error instanceof AppError ? error.code : 'SANDBOX_START_FAILED');
      const cause = stepError ? stepError.message : describeCause(lastError ?? error);
      const detail = timedOut
        ? `Start-up step "${step}" (${startStepLabels[step]}) did not answer within ${this.#o.bootTimeoutMs} ms${lastError ? `: ${cause}` : '.'}`
        : `Start-up step "${step}" (${startStepLabels[step]}) failed: ${cause}`;
      log.warn({ err: error, step, code }, 'session failed to start');
      this.#o.metrics.startStepSeconds.observe({ step, outcome: 'failed' }, (performance.now() - bootStarted) / 1000);
      await this.#o.store
        .appendEvent(id, { type: 'step.failed', details: { step, error: code, cause } })
        .catch(() => {});
      await this.fail(id, code, detail, { step }).catch((failError) => log.error({ err: failError }, 'could not record failure'));
    }
  }

  /**
   * The `login` step: a fresh sandbox token (the store keeps its hash; the plain token goes to the
   * agent only, after start, and is then forgotten here), and the agent starts the provider's login.
   * The agent reports the start to the server with that token before answering, so a session is
   * only ready once the agent → server hop has carried a token too.
   */
  async #startLogin(id: SessionId, provider: string, handle: SandboxHandle, signal: AbortSignal): Promise<void> {
    if (!(provider in providers)) throw new StepError('login', 'PROVIDER_UNKNOWN', `No provider is named "${provider}".`);
    const token = randomBytes(32).toString('base64url');
    await this.#o.store.setAgentTokenHash(id, hashAgentToken(token));
    const demo = provider === 'demo' ? this.#o.login.demo() : undefined;
    if (provider === 'demo' && !demo) throw new StepError('login', 'LOGIN_START_FAILED', 'The demo provider is switched off on this server (PORTHOLE_DEMO_PROVIDER).');
    try {
      await startAgentLogin(
        handle.agent,
        { sessionId: id, provider: provider as CredentialDelivery['provider'], token, serverUrl: this.#o.login.serverUrl(), ...(demo ? { demo } : {}) },
        { signal, timeoutMs: 15_000 },
      );
    } catch (error) {
      if (signal.aborted) throw error;
      throw new StepError('login', error instanceof AppError ? error.code : 'LOGIN_START_FAILED', describeCause(error), { cause: error });
    }
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
    if (isTerminal(session.state) && session.state !== 'completed') throw new AppError(closeReasonOf(session), { details: { state: session.state, reason: session.reason } });
    const verdict = await provider.verify(delivery.content, { demo: this.#o.login.demo(), fetch: globalThis.fetch, signal: timeoutSignal(credentialVerifyTimeoutMs) });
    if (!verdict.ok) {
      if (verdict.isRetryable) throw new AppError('CREDENTIAL_VERIFY_UNAVAILABLE', { details: { reason: verdict.reason } });
      const failed = await this.#move(id, 'failed', 'CREDENTIAL_UNVERIFIED', `The credential did not verify with the provider: ${verdict.reason}.`, { provider: delivery.provider, file: delivery.file, reason: verdict.reason });
      // After the answer, as for a completed session: the agent that asked is in the sandbox.
      if (failed.state === 'failed') setImmediate(() => void this.#release(failed).catch((error: unknown) => this.#log.error({ err: error, sessionId: id }, 'could not release a failed session')));
      this.#log.warn({ sessionId: id, provider: delivery.provider, reason: verdict.reason }, 'delivered credential did not verify');
      throw new AppError('CREDENTIAL_UNVERIFIED', { message: 'The credential did not verify with the provider.', details: { reason: verdict.reason } });
    }
    const { verification, account, expiresAt } = verdict;
    const { created } = await this.#o.vault.put(id, { provider: delivery.provider, content: delivery.content, expiresAt, account, verification });
    const facts = { provider: delivery.provider, account, expiresAt, verification, file: delivery.file };
    if (created) await this.#o.store.appendEvent(id, { type: 'credentials.stored', details: facts });
    const moved = await this.#move(id, 'completed', 'credentials_captured', null, facts);
    // After the answer: the agent that asked is in the sandbox about to be destroyed.
    setImmediate(() => void this.#release(moved).catch((error: unknown) => this.#log.error({ err: error, sessionId: id }, 'could not release a completed session')));
    this.#log.info({ sessionId: id, provider: delivery.provider, created, verification }, 'credentials captured');
    return { created, session: moved };
  }

  /** Moves a session to a terminal state; returns it unchanged when it is already terminal. */
  async #move(id: SessionId, to: SessionState, reason: string, detail: string | null, details?: Record<string, unknown>): Promise<Session> {
    for (let attempt = 0; ; attempt++) {
      const session = await this.get(id);
      if (isTerminal(session.state) || !canTransition(session.state, to)) return session;
      try {
        const moved = await this.#o.store.transition(id, { from: session.state, to, expectVersion: session.version, reason, detail, details });
        this.#log.info({ sessionId: id, from: session.state, to, reason }, 'session state changed');
        this.#o.metrics.transitions.inc({ to, reason });
        if (to === 'failed') this.#o.metrics.errors.inc({ code: reason, surface: 'session' });
        return moved;
      } catch (error) {
        if (!(error instanceof AppError && error.code === 'SESSION_STATE_CONFLICT') || attempt >= 5) throw error;
      }
    }
  }

  /** A non-terminal move that only applies when the session is still at `from`. */
  async #moveIf(id: SessionId, from: SessionState, to: SessionState, reason: string): Promise<void> {
    const session = await this.#o.store.getSession(id);
    if (!session || session.state !== from) return;
    try {
      await this.#o.store.transition(id, { from, to, expectVersion: session.version, reason });
      this.#o.metrics.transitions.inc({ to, reason });
    } catch (error) {
      if (!(error instanceof AppError && error.code === 'SESSION_STATE_CONFLICT')) throw error;
    }
  }

  /** After a terminal move: stop the boot, close viewers with the session's code, destroy the sandbox. */
  async #release(session: Session): Promise<void> {
    if (!isTerminal(session.state)) return;
    const id = session.id as SessionId;
    this.#boots.get(id)?.abort(new AppError('SESSION_ENDED'));
    this.#idleSince.delete(id);
    await this.#o.sandboxHost?.detach(id);
    if (session.state === 'completed') this.#o.viewers.closeAll(id, 1000, 'completed');
    else {
      const code = closeReasonOf(session);
      this.#o.viewers.closeAll(id, closeCodeOf(code), code);
    }
    if (session.sandboxId) {
      await this.#o.driver
        .destroy(session.sandboxId as SandboxId)
        .catch((error) => this.#log.error({ err: error, sessionId: id, sandboxId: session.sandboxId }, 'could not destroy sandbox'));
    }
  }
}

