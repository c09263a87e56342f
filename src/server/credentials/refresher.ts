import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { backoffDelayMs, type Backoff } from '../../protocol/backoff.js';
import { AppError } from '../../protocol/errors.js';
import type { SessionId } from '../../protocol/ids.js';
import type { ProviderName } from '../../protocol/session-states.js';
import { providers } from '../../providers/index.js';
import type { AccessToken, VerifyContext } from '../../providers/provider.js';
import type { StoredCredential, Store } from '../../store/store.js';
import { timeoutSignal } from '../../drivers/timeout-signal.js';
import type { Metrics } from '../metrics.js';
import { refreshDueAt } from './refresh-schedule.js';
import type { Vault } from './vault.js';

// porthole as the one refresher of each stored grant. Refresh tokens rotate on use, so two holders
// refreshing the same grant sign the person out everywhere; porthole keeps the grant and refreshes
// it itself, ahead of expiry, once at a time across every server on one store:
// - a credential is due `refreshLeadMs(lifetime)` before its access token expires, jittered, so
//   that grants captured together do not all refresh in the same second;
// - a server claims due credentials in one conditional UPDATE (a lease in database time, the
//   store's leaseRefreshes): no two servers refresh the same grant, and a server that dies
//   mid-refresh loses its claim when the lease ends;
// - the provider's answer is stored with the claimed version and its event in one transaction
//   (finishRefresh): the rotated refresh token lands atomically with the new access token;
// - a refused refresh (invalid_grant: revoked, or its refresh token used elsewhere) makes the
//   credential `needs_login`; anything else is tried again with backoff.

export interface RefresherOptions {
  store: Store;
  vault: Vault;
  log: Logger;
  metrics: Pick<Metrics, 'credentialRefreshes'>;
  /** The providers whose grants this server refreshes (PORTHOLE_REFRESH_PROVIDERS). */
  providers: readonly ProviderName[];
  /** What the provider modules talk through (the demo issuer this server trusts, fetch). */
  context: () => Omit<VerifyContext, 'signal'>;
  /** How often to look for due credentials; a due one waits at most this long. */
  pollMs?: number;
  /** How long a claim holds (database time): longer than one refresh can take. */
  leaseMs?: number;
  /** One refresh's deadline. */
  requestTimeoutMs?: number;
}

/** After a failed refresh: 5 s, 10 s, 20 s … up to 15 min, ±20 %. */
export const refreshRetryBackoff: Backoff = { firstMs: 5_000, maxMs: 15 * 60_000, jitter: 0.2 };

export class Refresher {
  readonly #o: RefresherOptions;
  readonly #stop = new AbortController();
  #loop: Promise<void> | null = null;
  /** This server's refreshes in flight, by session: a second ask for the same grant waits for the first. */
  readonly #inFlight = new Map<SessionId, Promise<void>>();

  constructor(options: RefresherOptions) {
    this.#o = options;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
    await Promise.allSettled([...this.#inFlight.values()]);
  }

  /** Refreshes what is due now, once; returns how many it claimed. The loop calls it; tests may too. */
  async tick(): Promise<number> {
    const claimed = await this.#o.store.leaseRefreshes({ limit: 10, leaseMs: this.#leaseMs, providers: this.#o.providers });
    await Promise.all(claimed.map((credential) => this.#track(credential.sessionId, () => this.#refresh(credential))));
    return claimed.length;
  }

  /**
   * The session's access token, fresh: refreshed first (claimed like any refresh) when its refresh
   * is due or it has expired. Throws CREDENTIALS_NOT_FOUND, CREDENTIAL_NEEDS_LOGIN, CREDENTIAL_REFRESH_UNAVAILABLE.
   */
  async accessToken(sessionId: SessionId): Promise<{ token: AccessToken; provider: string; account: string | null }> {
    for (let attempt = 0; ; attempt++) {
      const credential = await this.#o.vault.get(sessionId);
      if (!credential) throw new AppError('CREDENTIALS_NOT_FOUND', { details: { sessionId } });
      if (credential.state === 'needs_login') {
        throw new AppError('CREDENTIAL_NEEDS_LOGIN', { details: { sessionId, reason: credential.refreshError } });
      }
      const provider = providers[credential.provider as ProviderName];
      const token = provider?.accessToken(credential.content) ?? null;
      if (!token) throw new AppError('CREDENTIALS_NOT_FOUND', { message: 'The stored credential holds no access token.', details: { sessionId } });
      // Fresh enough: not expired, and its refresh not yet due (the background would do it within a second).
      const now = Date.now();
      const expires = token.expiresAt === null ? Number.POSITIVE_INFINITY : Date.parse(token.expiresAt);
      const isDue = credential.refreshDueAt !== null && Date.parse(credential.refreshDueAt) <= now;
      if (expires > now && !isDue) return { token, provider: credential.provider, account: credential.account };
      if (!this.#o.providers.includes(credential.provider as ProviderName)) {
        throw new AppError('CREDENTIAL_REFRESH_UNAVAILABLE', {
          details: { sessionId, reason: `this server does not refresh ${credential.provider} credentials (PORTHOLE_REFRESH_PROVIDERS)` },
        });
      }
      if (attempt >= 3) {
        throw new AppError('CREDENTIAL_REFRESH_UNAVAILABLE', {
          details: { sessionId, reason: credential.refreshError ?? 'the refresh did not finish in time' },
        });
      }
      await this.refreshNow(sessionId);
    }
  }

  /**
   * Refreshes the session's grant now if it is due (`evenIfNotDue`: in any case) unless another
   * refresh of it is under way (here: waits for it; on another server: waits a moment for its result). Never throws for the provider's answer:
   * the store records it and the caller reads the credential again.
   */
  async refreshNow(sessionId: SessionId, options: { evenIfNotDue?: boolean } = {}): Promise<void> {
    const mine = this.#inFlight.get(sessionId);
    if (mine) return mine;
    // Only if still due: a refresh that finished a moment ago (here or on another server) is not repeated.
    const [claimed] = await this.#o.store.leaseRefreshes({
      limit: 1,
      leaseMs: this.#leaseMs,
      providers: this.#o.providers,
      sessionId,
      evenIfNotDue: options.evenIfNotDue === true,
    });
    if (claimed) return this.#track(sessionId, () => this.#refresh(claimed));
    // Another server holds the grant's lease: its result shows in the store when it is done.
    await new Promise((resolve) => setTimeout(resolve, 500));
  }

  get #leaseMs(): number {
    return this.#o.leaseMs ?? 60_000;
  }

  #track(sessionId: SessionId, work: () => Promise<void>): Promise<void> {
    const run = work().finally(() => this.#inFlight.delete(sessionId));
    this.#inFlight.set(sessionId, run);
    return run;
  }

  async #run(): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      try {
        await this.tick();
      } catch (error) {
        // The store is down: the credentials wait in it; try again at the next tick.
        this.#o.log.warn({ err: error }, 'credential refresh pass failed; retrying');
      }
      // timers/promises removes its abort listener when the timer fires: none pile up on `signal`.
      await sleep(this.#o.pollMs ?? 1_000, undefined, { signal }).catch(() => {});
    }
  }

  /** One claimed refresh: ask the provider, store what it said. Never throws. */
  async #refresh(credential: StoredCredential): Promise<void> {
    const { sessionId, version } = credential;
    const log = this.#o.log.child({ sessionId, provider: credential.provider });
    const started = performance.now();
    try {
      const name = credential.provider as ProviderName;
      const provider = providers[name];
      if (!provider) throw new Error(`no provider is named ${credential.provider}`);
      const content = this.#o.vault.open(credential);
      const outcome = await provider.refresh(content, { ...this.#o.context(), signal: timeoutSignal(this.#o.requestTimeoutMs ?? 30_000) });
      const seconds = (performance.now() - started) / 1000;
      if (outcome.ok) {
        const stored = await this.#o.store.finishRefresh(sessionId, version, {
          kind: 'refreshed',
          sealed: this.#o.vault.seal(sessionId, outcome.content),
          expiresAt: outcome.expiresAt,
          refreshDueAt: refreshDueAt(outcome.expiresAt),
        });
        this.#o.metrics.credentialRefreshes.observe({ provider: name, outcome: 'refreshed' }, seconds);
        // Not stored: the credential changed meanwhile (a rotation of the master key does not change
        // the version; a new sign-in does not reuse the row). The provider rotated the grant anyway.
        if (!stored) log.error('credential refreshed, but it changed meanwhile: the refreshed grant was not stored');
        else log.info({ expiresAt: outcome.expiresAt }, 'credential refreshed');
        return;
      }
      if (outcome.refused) {
        await this.#o.store.finishRefresh(sessionId, version, { kind: 'refused', reason: outcome.reason });
        this.#o.metrics.credentialRefreshes.observe({ provider: name, outcome: 'refused' }, seconds);
        log.warn({ reason: outcome.reason }, 'the provider refused the refresh: the person must sign in again');
        return;
      }
      await this.#retryLater(credential, outcome.reason);
      this.#o.metrics.credentialRefreshes.observe({ provider: name, outcome: 'failed' }, seconds);
      log.warn({ reason: outcome.reason, failures: credential.refreshFailures + 1 }, 'credential refresh failed; trying again later');
    } catch (error) {
      // Porthole's own failure (the store, a key that does not open): the lease ends by itself.
      log.error({ err: error }, 'credential refresh failed');
      await this.#retryLater(credential, error instanceof AppError ? error.code : 'internal error').catch(() => {});
    }
  }

  async #retryLater(credential: StoredCredential, reason: string): Promise<void> {
    const dueAt = new Date(Date.now() + backoffDelayMs(refreshRetryBackoff, credential.refreshFailures)).toISOString();
    await this.#o.store.finishRefresh(credential.sessionId, credential.version, { kind: 'failed', reason, refreshDueAt: dueAt });
  }
}
