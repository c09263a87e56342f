import type { Logger } from 'pino';
import type { Driver, Endpoint, SandboxHandle } from '../../drivers/driver.js';
import { fetchAgentHealth } from '../../drivers/endpoint-probes.js';
import { timeoutSignal } from '../../drivers/timeout-signal.js';
import { maxRunFileBytes, type AgentRunLine, type AgentRunRequest } from '../../protocol/agent.js';
import { AppError, type ErrorCode } from '../../protocol/errors.js';
import { newRunId, newSandboxId, type RunId, type SandboxId } from '../../protocol/ids.js';
import { isTerminalRun, type CreateRunBody, type Run, type RunState } from '../../protocol/runs.js';
import type { ProviderName } from '../../protocol/session-states.js';
import { providers } from '../../providers/index.js';
import type { NewRunEvent, StoredCredential, Store } from '../../store/store.js';
import { refreshDueAt } from '../credentials/refresh-schedule.js';
import type { Refresher } from '../credentials/refresher.js';
import type { Vault } from '../credentials/vault.js';
import type { EventFeed } from '../sessions/event-feed.js';
import type { SandboxHost } from '../sessions/sandbox-host.js';
import { Redactor, secretsOf } from './redactor.js';

// Runs — the remote CLI. A run takes a stored credential, holds its grant (the refresher's lease, so
// that porthole does not refresh it while the CLI may), starts a sandbox with no desktop (the same
// driver and isolation as a sign-in's), has the agent install the credential where the CLI reads it
// and run the CLI non-interactively, stores its output as it comes (the credential's secrets
// replaced by [redacted]), captures the credential file again at the end (a CLI that refreshed on
// its own rotated the grant: the new file is stored), gives the grant back and destroys the sandbox.
// The refresh token goes to the sandbox and back, never to the API: nothing a run returns holds it.

/** POST /run on the agent (src/drivers/endpoint-probes.ts runOnAgent). */
export type RunOnAgent = (
  endpoint: Endpoint,
  request: AgentRunRequest,
  options: { signal?: AbortSignal; onLine: (line: AgentRunLine) => void },
) => Promise<Extract<AgentRunLine, { type: 'exit' }>>;

export interface RunManagerOptions {
  store: Store;
  vault: Vault;
  refresher: Refresher;
  driver: Driver;
  sandboxHost: SandboxHost | null;
  feed: EventFeed;
  log: Logger;
  runOnAgent: RunOnAgent;
  /** The sandbox's spec, as a session's (no desktop is started; the size is the agent's config only). */
  sandbox: { width: number; height: number; startUrl: string; loopbackOnly: boolean; leaseMs: number; tunnels: readonly { host: string; port: number }[] };
  /** The demo issuer this server trusts, for the demo CLI's run. */
  demo: () => { issuer: string; clientId: string } | undefined;
  /** Runs at once on this server; more are refused (TOO_MANY_RUNS). */
  maxRuns: number;
  /** How long the sandbox may take to answer. */
  startTimeoutMs: number;
}

/** Output is written in batches: at most this often, or sooner when this many lines wait. */
const flushEveryMs = 100;
const flushAtEvents = 64;

export class RunManager {
  readonly #o: RunManagerOptions;
  /** The runs under way here, by id: their abort and their work. */
  readonly #runs = new Map<RunId, { controller: AbortController; work: Promise<void>; sandboxId: SandboxId | null }>();
  #isClosed = false;

  constructor(options: RunManagerOptions) {
    this.#o = options;
  }

  /** Whether a sandbox is one of this server's runs' (the reconciler leaves those alone). */
  ownsSandbox(sandboxId: string): boolean {
    for (const run of this.#runs.values()) if (run.sandboxId === sandboxId) return true;
    return false;
  }

  /** Starts a run; returns it `starting`. Throws CREDENTIALS_NOT_FOUND, CREDENTIAL_NEEDS_LOGIN, TOO_MANY_RUNS, VALIDATION_FAILED. */
  async create(body: CreateRunBody, apiKeyId: string | null): Promise<Run> {
    if (this.#isClosed) throw new AppError('SERVER_SHUTTING_DOWN');
    const sessionId = (body.sessionId ?? body.credentialId)!;
    const credential = await this.#o.vault.get(sessionId);
    if (!credential) throw new AppError('CREDENTIALS_NOT_FOUND', { details: { sessionId } });
    if (credential.state === 'needs_login') throw new AppError('CREDENTIAL_NEEDS_LOGIN', { details: { sessionId, reason: credential.refreshError } });
    const files = body.files ?? {};
    const fileBytes = Object.values(files).reduce((sum, content) => sum + Buffer.byteLength(content), 0);
    if (fileBytes > maxRunFileBytes) {
      throw new AppError('VALIDATION_FAILED', { message: `A run's files may hold ${maxRunFileBytes} bytes in all; these hold ${fileBytes}.` });
    }
    for (const path of Object.keys(files)) {
      if (path.startsWith('/') || path.split('/').includes('..') || path.includes('\0')) {
        throw new AppError('VALIDATION_FAILED', { message: `A run's file must be a relative path inside its directory: ${JSON.stringify(path)}.` });
      }
    }
    if (this.#runs.size >= this.#o.maxRuns) throw new AppError('TOO_MANY_RUNS', { details: { maxRuns: this.#o.maxRuns } });
    const args = body.prompt !== undefined ? [body.prompt] : [...(body.args ?? [])];
    const run = await this.#o.store.createRun({
      id: newRunId(),
      sessionId,
      provider: credential.provider as ProviderName,
      apiKeyId,
      args,
      timeoutMs: body.timeoutMs,
    });
    this.#o.feed.notify();
    const controller = new AbortController();
    const entry = { controller, work: Promise.resolve(), sandboxId: null as SandboxId | null };
    this.#runs.set(run.id, entry);
    entry.work = this.#execute(run, files, controller.signal, entry).finally(() => this.#runs.delete(run.id));
    this.#o.log.info({ runId: run.id, sessionId, provider: run.provider, apiKeyId }, 'run created');
    return run;
  }

  /**
   * Stops a run (its CLI is killed with its sandbox) and returns it once it is recorded as failed
   * with RUN_CANCELED. A run that is over is returned as it is; one under way on another server is
   * refused (RUN_ELSEWHERE: that server holds its sandbox).
   */
  async cancel(id: RunId): Promise<Run> {
    const entry = this.#runs.get(id);
    if (entry) {
      entry.controller.abort(new AppError('RUN_CANCELED'));
      await entry.work;
    }
    const run = await this.#o.store.getRun(id);
    if (!run) throw new AppError('RUN_NOT_FOUND', { details: { runId: id } });
    if (!entry && !isTerminalRun(run.state)) throw new AppError('RUN_ELSEWHERE', { details: { runId: id } });
    return run;
  }

  /** Stops every run here (their CLIs are killed with their sandboxes) and waits for them to be recorded. */
  async close(): Promise<void> {
    this.#isClosed = true;
    for (const run of this.#runs.values()) run.controller.abort(new AppError('SERVER_SHUTTING_DOWN'));
    await Promise.allSettled([...this.#runs.values()].map((run) => run.work));
  }

  /** One run, start to end. Never throws: what happened is on the run's record and timeline. */
  async #execute(run: Run, files: Record<string, string>, signal: AbortSignal, entry: { sandboxId: SandboxId | null }): Promise<void> {
    const o = this.#o;
    const log = o.log.child({ runId: run.id, sessionId: run.sessionId, provider: run.provider });
    const timeline = new RunTimeline(o.store, o.feed, run.id, log);
    let held: StoredCredential | null = null;
    let sandbox: SandboxHandle | null = null;
    let outcome: { state: RunState; exitCode: number | null; reason: string | null; detail: string | null };
    try {
      // 1. The grant, fresh and held: porthole refreshes it now if due, then lets nothing else refresh it until the run ends.
      await o.refresher.accessToken(run.sessionId);
      held = await this.#holdGrant(run, signal);
      const content = o.vault.open(held);

      // 2. A sandbox with no desktop.
      const started = performance.now();
      const sandboxId = newSandboxId();
      entry.sandboxId = sandboxId;
      await o.store.updateRun(run.id, { state: 'starting', sandboxId });
      const deadline = AbortSignal.any([signal, timeoutSignal(o.startTimeoutMs)]);
      sandbox = await o.driver.create({ id: sandboxId, ...o.sandbox, desktop: false }, { signal: deadline });
      await o.sandboxHost?.attach(run.id, sandbox, (event) => timeline.add({ type: event.type, details: event.details }));
      await waitForAgent(sandbox.agent, deadline);
      timeline.add({ type: 'run.sandbox', details: { sandboxId, ms: Math.round(performance.now() - started) } });

      // 3. The CLI, its output as it comes.
      await o.store.updateRun(run.id, { state: 'running' });
      o.feed.notify();
      const redactors = { stdout: new Redactor(secretsOf(content)), stderr: new Redactor(secretsOf(content)) };
      const demo = run.provider === 'demo' ? o.demo() : undefined;
      const exit = await o.runOnAgent(
        sandbox.agent,
        { runId: run.id, provider: run.provider, credential: content, args: run.args, files, timeoutMs: run.timeoutMs, ...(demo ? { demo } : {}) },
        {
          signal,
          onLine: (line) => {
            if (line.type === 'started') timeline.add({ type: 'run.started', details: { pid: line.pid, argv: line.argv } });
            else if (line.type === 'output') {
              const data = redactors[line.stream].push(line.data);
              if (data) timeline.add({ type: 'run.output', stream: line.stream, data });
            }
          },
        },
      );
      for (const stream of ['stdout', 'stderr'] as const) {
        const rest = redactors[stream].flush();
        if (rest) timeline.add({ type: 'run.output', stream, data: rest });
      }
      timeline.add({ type: 'run.exited', details: { code: exit.code, signal: exit.signal, timedOut: exit.timedOut } });

      // 4. The credential as the CLI left it: a CLI that refreshed on its own rotated the grant.
      if (exit.credential !== null && exit.credential !== content) {
        const check = providers[run.provider].validate(exit.credential);
        if (check.ok) {
          const stored = await o.store.finishRefresh(run.sessionId, held.version, {
            kind: 'refreshed',
            sealed: o.vault.seal(run.sessionId, exit.credential),
            expiresAt: check.expiresAt,
            refreshDueAt: refreshDueAt(check.expiresAt),
          });
          if (stored) held = null;
          timeline.add({ type: 'run.credential_captured', details: { expiresAt: check.expiresAt, stored } });
          log.info({ stored, expiresAt: check.expiresAt }, 'run: the CLI refreshed the grant; its new credential file is stored');
        } else {
          log.warn({ waitingFor: check.waitingFor }, 'run: the CLI left a credential file that does not validate; the stored one is kept');
        }
      }
      outcome = exit.timedOut
        ? { state: 'timed_out', exitCode: exit.code, reason: 'RUN_TIMEOUT', detail: `The CLI ran longer than ${run.timeoutMs} ms and was stopped.` }
        : exit.code === 0
          ? { state: 'succeeded', exitCode: 0, reason: null, detail: null }
          : {
              state: 'failed',
              exitCode: exit.code,
              reason: 'exit_code',
              detail: exit.code === null ? `The CLI was ended by ${exit.signal ?? 'a signal'}.` : `The CLI exited with ${exit.code}.`,
            };
    } catch (error) {
      // Stopped from outside (DELETE, shutdown): the stop's reason, not the broken connection it caused.
      const stop = signal.aborted && signal.reason instanceof AppError ? signal.reason : null;
      const code: ErrorCode = stop ? stop.code : error instanceof AppError ? error.code : 'RUN_FAILED';
      const detail = stop ? stop.message : error instanceof Error ? error.message : String(error);
      log.warn({ err: error, code }, 'run failed');
      timeline.add({ type: 'run.failed', details: { error: code, detail } });
      outcome = { state: 'failed', exitCode: null, reason: code, detail };
    }
    // The end: the grant given back, the sandbox gone, then the record says so (a client that sees
    // the run over finds nothing of it left running).
    if (held)
      await o.store
        .finishRefresh(run.sessionId, held.version, { kind: 'released' })
        .catch((error) => log.warn({ err: error }, 'run: could not give the grant back'));
    if (sandbox) {
      await o.sandboxHost?.detach(run.id).catch(() => {});
      await o.driver.destroy(sandbox.id).catch((error) => log.error({ err: error }, 'run: could not destroy its sandbox'));
    } else if (entry.sandboxId) {
      await o.driver.destroy(entry.sandboxId).catch(() => {});
    }
    timeline.add({ type: 'run.finished', details: { state: outcome.state } });
    await timeline.close();
    await o.store
      .updateRun(run.id, { state: outcome.state, exitCode: outcome.exitCode, reason: outcome.reason, detail: outcome.detail, finished: true })
      .catch((error) => log.error({ err: error }, 'run: could not record its end'));
    o.feed.notify();
    log.info({ state: outcome.state, exitCode: outcome.exitCode }, 'run finished');
  }

  /**
   * Claims the grant's refresh lease for the whole run (its time limit and a margin). Another
   * server's refresh of it ends within seconds: waits up to 10 s for it.
   */
  async #holdGrant(run: Run, signal: AbortSignal): Promise<StoredCredential> {
    const leaseMs = run.timeoutMs + this.#o.startTimeoutMs + 60_000;
    const giveUpAt = Date.now() + 10_000;
    for (;;) {
      signal.throwIfAborted();
      const [claimed] = await this.#o.store.leaseRefreshes({ limit: 1, leaseMs, providers: [run.provider], sessionId: run.sessionId, evenIfNotDue: true });
      if (claimed) return claimed;
      const current = await this.#o.store.getCredential(run.sessionId);
      if (current?.state === 'needs_login') throw new AppError('CREDENTIAL_NEEDS_LOGIN', { details: { sessionId: run.sessionId } });
      if (Date.now() > giveUpAt) throw new AppError('CREDENTIAL_BUSY', { details: { sessionId: run.sessionId } });
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}

/** Waits until the sandbox's agent answers its health (a run's sandbox has no desktop to wait for). */
async function waitForAgent(agent: Endpoint, signal: AbortSignal): Promise<void> {
  let lastError: unknown = null;
  for (;;) {
    if (signal.aborted) throw new AppError('SANDBOX_START_FAILED', { message: `The run's sandbox did not answer: ${describe(lastError ?? signal.reason)}` });
    try {
      const health = await fetchAgentHealth(agent, { signal, timeoutMs: 2_000 });
      if (health.healthy) return;
      lastError = new Error('the agent is not healthy yet');
    } catch (error) {
      lastError = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A run's timeline, written in batches (output comes in many small pieces) and in order. */
class RunTimeline {
  #pending: NewRunEvent[] = [];
  #writing: Promise<void> = Promise.resolve();
  #timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly store: Store,
    private readonly feed: EventFeed,
    private readonly runId: RunId,
    private readonly log: Logger,
  ) {}

  add(event: NewRunEvent): Promise<unknown> {
    this.#pending.push(event);
    if (this.#pending.length >= flushAtEvents) return this.#flush();
    this.#timer ??= setTimeout(() => void this.#flush(), flushEveryMs);
    return this.#writing;
  }

  async close(): Promise<void> {
    await this.#flush();
  }

  #flush(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const batch = this.#pending;
    this.#pending = [];
    this.#writing = this.#writing.then(async () => {
      if (batch.length === 0) return;
      await this.store
        .appendRunEvents(this.runId, batch)
        .catch((error) => this.log.error({ err: error, lost: batch.length }, 'run: could not write its timeline'));
      this.feed.notify();
    });
    return this.#writing;
  }
}
