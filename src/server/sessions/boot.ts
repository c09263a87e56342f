import type { Logger } from 'pino';
import type { Driver, SandboxHandle } from '../../drivers/driver.js';
import { fetchAgentHealth, readRfbBanner, startAgentLogin, timeoutSignal } from '../../drivers/endpoint-probes.js';
import type { CredentialDelivery } from '../../protocol/agent.js';
import { AppError, type ErrorCode } from '../../protocol/errors.js';
import { newSandboxId, type SessionId } from '../../protocol/ids.js';
import { startStepLabels, type Session, type StartStep } from '../../protocol/session.js';
import { providers } from '../../providers/index.js';
import type { Store } from '../../store/store.js';
import type { Metrics } from '../metrics.js';
import { hashAgentToken, newAgentToken } from './agent-token.js';
import { agentHealthProblem, bannerProblem } from './desktop-check.js';
import type { SandboxHost } from './sandbox-host.js';
import type { StateChange } from './transition.js';
import type { WarmPool } from './warm-pool.js';

export interface BootOptions {
  store: Store;
  driver: Driver;
  metrics: Metrics;
  /** The session layer's logger. */
  log: Logger;
  desktop: { width: number; height: number; startUrl: string; loopbackOnly?: boolean; leaseMs?: number; tunnels?: readonly { host: string; port: number }[] };
  /** The one deadline of the whole boot (BOOT_TIMEOUT). */
  bootTimeoutMs: number;
  /** For sessions with a provider: where the agent reaches this server, and the demo provider when it runs. */
  login: { serverUrl(): string; demo(): { issuer: string; clientId: string } | undefined };
  sandboxHost?: SandboxHost;
  /** Desktops started ahead; a session takes one when there is one. */
  pool?: WarmPool;
  /** The session manager's doors: a state change, a failure, and the release of a terminal session. */
  transition(id: SessionId, change: StateChange): Promise<Session>;
  fail(id: SessionId, code: ErrorCode, detail: string, details: Record<string, unknown>): Promise<Session>;
  release(session: Session): Promise<void>;
  /** The desktop answers (agent and VNC): viewers may watch the rest of the start. */
  onDesktopUp(id: SessionId): void;
  /** The session became ready (the idle clock starts, or a viewer already watching makes it authenticating). */
  onReady(id: SessionId): Promise<void>;
}

const probeIntervalMs = 100;
/** How often the agent step asks the driver whether the sandbox still runs while its agent does not answer. */
const sandboxLookMs = 1_000;

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

function describeCause(error: unknown): string {
  if (error instanceof AppError && error.cause) return `${error.code}: ${describeCause(error.cause)}`;
  const errno = (error as NodeJS.ErrnoException | undefined)?.code;
  const message = error instanceof Error ? error.message : String(error);
  return errno && !message.includes(errno) ? `${errno} ${message}` : message;
}

/**
 * Boots a session, in the background after `POST` returned it: the start-up steps in order —
 * sandbox (a checked desktop from the warm pool, else `driver.create`; then its egress proxy and
 * agent channel; the step's event says `warm`), agent (healthy and of the
 * server's version), vnc (an RFB banner), login (only with a provider) — each an event with its
 * duration, then `starting → ready`. One deadline covers the whole boot; a boot that misses it fails
 * with BOOT_TIMEOUT and a detail naming the step and its last error. Aborting `signal` (the session
 * ended meanwhile: user, shutdown) stops it and releases what it had. Never throws.
 */
export async function bootSession(o: BootOptions, session: Session, signal: AbortSignal): Promise<void> {
  const id = session.id;
  const log = o.log.child({ sessionId: id });
  const deadline = AbortSignal.any([signal, timeoutSignal(o.bootTimeoutMs)]);
  let step: StartStep = 'sandbox';
  const bootStarted = performance.now();
  let lastError: unknown = null;
  /** Runs one step between its events; `facts` adds to the succeeded event what the work found out. */
  const run = async <T>(name: StartStep, work: () => Promise<T>, facts: (result: T) => Record<string, unknown> = () => ({})): Promise<T> => {
    step = name;
    lastError = null;
    const started = performance.now();
    await o.store.appendEvent(id, { type: 'step.started', details: { step: name } });
    const result = await work();
    const ms = Math.round(performance.now() - started);
    o.metrics.startStepSeconds.observe({ step: name, outcome: 'ok' }, ms / 1000);
    await o.store.appendEvent(id, { type: 'step.succeeded', details: { step: name, ms, ...facts(result) } });
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
    const { handle } = await run(
      'sandbox',
      async () => {
        // Warm: a desktop of the pool, already up (the store gave its id to this session). Cold: our own.
        const pooled = (await o.pool?.take(id, deadline)) ?? null;
        let sandbox = pooled;
        if (!sandbox) {
          const sandboxId = newSandboxId();
          await o.store.setSandbox(id, sandboxId);
          sandbox = await o.driver.create({ id: sandboxId, ...o.desktop }, { signal: deadline });
        }
        await o.sandboxHost?.attach(id, sandbox);
        return { handle: sandbox, isWarm: pooled !== null };
      },
      ({ isWarm }) => ({ warm: isWarm }),
    );
    let lookedAt = performance.now();
    await run('agent', () =>
      until(async () => {
        try {
          const health = await fetchAgentHealth(handle.agent, { signal: deadline, timeoutMs: 2_000 });
          const problem = agentHealthProblem(health);
          if (problem?.code) throw new StepError('agent', problem.code, problem.reason);
          if (problem) throw new Error(problem.reason);
          return health;
        } catch (error) {
          // An agent that died (a bundle it cannot read, a crash at start) never answers: say so
          // now, with how it ended, rather than at the deadline. The driver is asked once a second.
          if (!(error instanceof StepError) && performance.now() - lookedAt >= sandboxLookMs) {
            lookedAt = performance.now();
            const info = await o.driver.inspect(handle.id).catch(() => null);
            if (info?.status === 'exited')
              throw new StepError('agent', 'SANDBOX_START_FAILED', `the sandbox exited (${info.exit ?? 'how is not known'}) before its agent answered`, {
                cause: error,
              });
          }
          throw error;
        }
      }),
    );
    await run('vnc', () =>
      until(async () => {
        const banner = await readRfbBanner(handle.vnc, { signal: deadline, timeoutMs: 2_000 });
        const problem = bannerProblem(banner);
        if (problem) throw new Error(problem);
        return banner;
      }),
    );
    o.onDesktopUp(id);
    const provider = session.provider;
    if (provider !== null) await run('login', () => startLogin(o, id, provider, handle, deadline));
    const ready = await o.transition(id, { from: 'starting', to: 'ready', reason: 'desktop_answered' });
    // Not moved: the session ended meanwhile (its end aborts `signal`), as the store would say.
    if (ready.state !== 'ready') throw new AppError('SESSION_STATE_CONFLICT', { details: { sessionId: id, state: ready.state } });
    await o.onReady(id);
  } catch (error) {
    if (signal.aborted) {
      // Ended meanwhile (user, shutdown): end() already moved the state; make sure the sandbox goes.
      const current = await o.store.getSession(id).catch(() => null);
      if (current) await o.release(current);
      return;
    }
    const stepError = error instanceof StepError ? error : null;
    const timedOut = !stepError && deadline.aborted;
    const code: ErrorCode = stepError?.code ?? (timedOut ? 'BOOT_TIMEOUT' : error instanceof AppError ? error.code : 'SANDBOX_START_FAILED');
    const cause = stepError ? stepError.message : describeCause(lastError ?? error);
    const detail = timedOut
      ? `Start-up step "${step}" (${startStepLabels[step]}) did not answer within ${o.bootTimeoutMs} ms${lastError ? `: ${cause}` : '.'}`
      : `Start-up step "${step}" (${startStepLabels[step]}) failed: ${cause}`;
    log.warn({ err: error, step, code }, 'session failed to start');
    o.metrics.startStepSeconds.observe({ step, outcome: 'failed' }, (performance.now() - bootStarted) / 1000);
    await o.store.appendEvent(id, { type: 'step.failed', details: { step, error: code, cause } }).catch(() => {});
    await o.fail(id, code, detail, { step }).catch((failError) => log.error({ err: failError }, 'could not record failure'));
  }
}

/**
 * The `login` step: a fresh sandbox token (the store keeps its hash; the plain token goes to the
 * agent only, after start, and is then forgotten here), and the agent starts the provider's login.
 * The agent reports the start to the server with that token before answering, so a session is
 * only ready once the agent → server hop has carried a token too.
 */
async function startLogin(o: BootOptions, id: SessionId, provider: string, handle: SandboxHandle, signal: AbortSignal): Promise<void> {
  if (!(provider in providers)) throw new StepError('login', 'PROVIDER_UNKNOWN', `No provider is named "${provider}".`);
  const token = newAgentToken();
  await o.store.setAgentTokenHash(id, hashAgentToken(token));
  const demo = provider === 'demo' ? o.login.demo() : undefined;
  if (provider === 'demo' && !demo)
    throw new StepError('login', 'LOGIN_START_FAILED', 'The demo provider is switched off on this server (PORTHOLE_DEMO_PROVIDER).');
  try {
    await startAgentLogin(
      handle.agent,
      { sessionId: id, provider: provider as CredentialDelivery['provider'], token, serverUrl: o.login.serverUrl(), ...(demo ? { demo } : {}) },
      { signal, timeoutMs: 15_000 },
    );
  } catch (error) {
    if (signal.aborted) throw error;
    throw new StepError('login', error instanceof AppError ? error.code : 'LOGIN_START_FAILED', describeCause(error), { cause: error });
  }
}
