import { errorFromResponse, PortholeError } from './errors.js';
import { readEventStream } from './sse.js';
import type {
  AccessToken,
  ApiKey,
  CreateRunInput,
  Run,
  RunEvent,
  CreatedKey,
  CreateKeyInput,
  CreateSessionInput,
  ListSessionsQuery,
  ListWebhookDeliveriesQuery,
  Session,
  SessionCredentials,
  SessionEvent,
  SessionState,
  ViewerTicket,
  WebhookDelivery,
} from './types.js';

export interface PortholeOptions {
  /** Where porthole listens, e.g. `https://porthole.internal:8480` (a path prefix is kept: `https://app.example/porthole`). */
  baseUrl: string;
  /** An API key: an app's own key (`porthole keys create`), or an admin key. Never send it to a browser. */
  apiKey: string;
  /** A fetch to use instead of the global one (a test double, an agent with custom TLS). */
  fetch?: typeof fetch;
}

export interface StreamOptions {
  /** Start after this event seq (the last one you handled); the session's first event by default. */
  after?: number;
  /** Aborting it ends the iteration with the signal's reason. */
  signal?: AbortSignal;
}

export interface WaitForOptions {
  /** Reject with WAIT_TIMEOUT after this long; no limit by default. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

const terminalStates: readonly SessionState[] = ['completed', 'failed', 'ended'];

/**
 * porthole's HTTP API for an app's server. Every method throws a PortholeError on failure. Keep
 * the API key on the server: browsers get a viewer URL (createViewerTicket) and nothing else.
 */
export class Porthole {
  readonly baseUrl: string;
  readonly #apiKey: string;
  readonly #fetch: typeof fetch;

  constructor(options: PortholeOptions) {
    if (!options.baseUrl) throw new TypeError('Porthole: baseUrl is required');
    if (!options.apiKey) throw new TypeError('Porthole: apiKey is required');
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.#apiKey = options.apiKey;
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  }

  // ---- sessions ----

  /** Starts a session: a sandbox boots and the provider's CLI starts its sign-in. Watch it with waitFor or events. */
  createSession(input: CreateSessionInput = {}): Promise<Session> {
    return this.#request('POST', '/v1/sessions', { body: input });
  }

  getSession(id: string): Promise<Session> {
    return this.#request('GET', `/v1/sessions/${encodeURIComponent(id)}`);
  }

  /** Sessions, newest first: an app key sees the ones it created, an admin key all. */
  async listSessions(query: ListSessionsQuery = {}): Promise<Session[]> {
    const { sessions } = await this.#request<{ sessions: Session[] }>('GET', '/v1/sessions', { query });
    return sessions;
  }

  /** Ends a session (its viewers close, its sandbox goes). Idempotent: ending an ended session returns it. */
  endSession(id: string): Promise<Session> {
    return this.#request('DELETE', `/v1/sessions/${encodeURIComponent(id)}`);
  }

  /** A short-lived viewer URL for the person's browser (mountViewer frames it); the viewer renews its own ticket. */
  createViewerTicket(id: string): Promise<ViewerTicket> {
    return this.#request('POST', `/v1/sessions/${encodeURIComponent(id)}/ticket`);
  }

  /** The credential file the sign-in produced (CREDENTIALS_NOT_FOUND before). Each read is recorded on the session's timeline, naming the key. */
  getCredentials(id: string): Promise<SessionCredentials> {
    return this.#request('GET', `/v1/sessions/${encodeURIComponent(id)}/credentials`);
  }

  /**
   * A fresh access token alone (porthole refreshes the grant first when due), for calling the
   * provider's API yourself. porthole stays the one refresher: the refresh token never leaves it.
   * Rejects with CREDENTIAL_NEEDS_LOGIN when the provider refused the refresh (start signInAgain).
   */
  getAccessToken(id: string): Promise<AccessToken> {
    return this.#request('GET', `/v1/sessions/${encodeURIComponent(id)}/credentials/access-token`);
  }

  /** A new session for the same user and provider, owned by this key: for a credential that needs a new sign-in. */
  signInAgain(id: string): Promise<Session> {
    return this.#request('POST', `/v1/sessions/${encodeURIComponent(id)}/sign-in-again`);
  }

  // ---- runs: the remote CLI ----

  /** Runs the provider's CLI non-interactively with the session's stored credential, in a sandbox; follow it with runEvents. */
  createRun(input: CreateRunInput): Promise<Run> {
    return this.#request('POST', '/v1/runs', { body: input });
  }

  getRun(id: string): Promise<Run> {
    return this.#request('GET', `/v1/runs/${encodeURIComponent(id)}`);
  }

  async listRuns(): Promise<Run[]> {
    return (await this.#request<{ runs: Run[] }>('GET', '/v1/runs')).runs;
  }

  /** Stops a run (its CLI is killed with its sandbox); resolves with it, failed with RUN_CANCELED. */
  cancelRun(id: string): Promise<Run> {
    return this.#request('DELETE', `/v1/runs/${encodeURIComponent(id)}`);
  }

  /** The run's timeline and output as they happen (resumed after a dropped connection); ends once the run is over. */
  runEvents(id: string, options: StreamOptions = {}): AsyncGenerator<RunEvent, void, undefined> {
    const path = `/v1/runs/${encodeURIComponent(id)}/events`;
    return readEventStream<RunEvent>({
      what: `GET ${path}`,
      after: options.after ?? null,
      signal: options.signal,
      open: (lastEventId, signal) => this.#openStream(path, lastEventId, signal),
    });
  }

  // ---- live events ----

  /**
   * The session's events as they happen, from the first (or after `after`): transitions and
   * start-up steps. A dropped connection is resumed where it stopped (Last-Event-ID), so no event
   * is missed or repeated. The iteration ends once the session is terminal and every event was
   * handed out; `break` or the signal end it sooner.
   */
  events(id: string, options: StreamOptions = {}): AsyncGenerator<SessionEvent, void, undefined> {
    const path = `/v1/sessions/${encodeURIComponent(id)}/events`;
    return readEventStream<SessionEvent>({
      what: `GET ${path}`,
      after: options.after ?? null,
      signal: options.signal,
      open: (lastEventId, signal) => this.#openStream(path, lastEventId, signal),
    });
  }

  /**
   * Every event of every session this key may see (an app key: its own sessions), in order, from
   * now (or after `after`). It never ends by itself: `break` or the signal end it. If the first
   * connection drops before any event arrived, events in the gap are not replayed: pass `after`
   * (the last seq you stored) to resume exactly.
   */
  allEvents(options: StreamOptions = {}): AsyncGenerator<SessionEvent, void, undefined> {
    return readEventStream<SessionEvent>({
      what: 'GET /v1/events',
      after: options.after ?? null,
      signal: options.signal,
      open: (lastEventId, signal) => this.#openStream('/v1/events', lastEventId, signal),
    });
  }

  /**
   * Resolves with the session once it has reached one of `states`: it is in one now, or its event
   * stream shows a transition to one. It resolves with the session as read then, which may have
   * moved on already (a session that became `ready` may be `authenticating`, or ended, by the time
   * it is read): reached is what it waits for. Rejects with WAIT_STATE_UNREACHABLE when the session
   * is, or settles, in another terminal state first (the error's `session` says how), WAIT_TIMEOUT
   * after `timeoutMs`, or the signal's reason.
   */
  async waitFor(id: string, states: readonly SessionState[], options: WaitForOptions = {}): Promise<Session> {
    if (states.length === 0) throw new TypeError('waitFor: name at least one state');
    const controller = new AbortController();
    const onAbort = () => controller.abort(options.signal?.reason);
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const timeout =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(
            () =>
              controller.abort(
                new PortholeError('WAIT_TIMEOUT', `Session ${id} did not reach ${states.join(' or ')} within ${options.timeoutMs} ms.`, {
                  status: null,
                  details: { sessionId: id, states, timeoutMs: options.timeoutMs },
                }),
              ),
            options.timeoutMs,
          );
    try {
      if (options.signal?.aborted) throw options.signal.reason;
      const settle = (session: Session): Session | null => {
        if (states.includes(session.state)) return session;
        if (terminalStates.includes(session.state)) {
          const why = [session.reason, session.detail].filter(Boolean).join(': ');
          throw new PortholeError('WAIT_STATE_UNREACHABLE', `Session ${id} is ${session.state}${why ? ` (${why})` : ''}, not ${states.join(' or ')}.`, {
            status: null,
            details: { sessionId: id, states, state: session.state, reason: session.reason },
            session,
          });
        }
        return null;
      };
      const signal = controller.signal;
      const read = () => abortable(this.getSession(id), signal);
      const now = settle(await read());
      if (now) return now;
      // The stream replays the session's history first, so a state reached between the read above and the connection is seen too.
      for await (const event of this.events(id, { signal })) {
        if (event.to === null) continue;
        // Reached, though it may have moved on since (ready → authenticating, or even ended): reached is what was asked.
        if (states.includes(event.to)) return await read();
        if (terminalStates.includes(event.to)) break;
      }
      // Terminal (the stream ends once a session is): settle throws, naming how it ended.
      const session = await read();
      const settled = settle(session);
      if (settled) return settled;
      throw new PortholeError('INVALID_RESPONSE', `The event stream of session ${id} ended while it is ${session.state}.`, { status: null, session });
    } catch (error) {
      if (controller.signal.aborted) throw controller.signal.reason;
      throw error;
    } finally {
      clearTimeout(timeout);
      options.signal?.removeEventListener('abort', onAbort);
      controller.abort();
    }
  }

  // ---- keys (admin) and webhooks ----

  /** A new API key (admin only). `admin: false` (the default) makes an app key; `webhookUrl` gives it its own signed webhook. */
  createKey(input: CreateKeyInput): Promise<CreatedKey> {
    return this.#request('POST', '/v1/keys', { body: input });
  }

  async listKeys(): Promise<ApiKey[]> {
    const { keys } = await this.#request<{ keys: ApiKey[] }>('GET', '/v1/keys');
    return keys;
  }

  /** Revokes a key: from now on it gets 401 API_KEY_INVALID. Returns the key's record with `revokedAt`. */
  revokeKey(keyId: string): Promise<ApiKey> {
    return this.#request('DELETE', `/v1/keys/${encodeURIComponent(keyId)}`);
  }

  /** The webhook delivery log (an app key: its own sessions'), newest first. */
  async listWebhookDeliveries(query: ListWebhookDeliveriesQuery = {}): Promise<WebhookDelivery[]> {
    const { deliveries } = await this.#request<{ deliveries: WebhookDelivery[] }>('GET', '/v1/webhooks/deliveries', { query });
    return deliveries;
  }

  // ---- transport ----

  #url(path: string, query?: object): string {
    const search = new URLSearchParams();
    for (const [name, value] of Object.entries(query ?? {})) {
      if (value !== undefined && value !== null) search.set(name, String(value));
    }
    return `${this.baseUrl}${path}${search.size > 0 ? `?${search}` : ''}`;
  }

  async #send(
    method: string,
    path: string,
    init: { query?: object; body?: unknown; headers?: Record<string, string>; signal?: AbortSignal },
  ): Promise<Response> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.#apiKey}`, accept: 'application/json', ...init.headers };
    if (init.body !== undefined) headers['content-type'] = 'application/json';
    try {
      return await this.#fetch(this.#url(path, init.query), {
        method,
        headers,
        body: init.body === undefined ? undefined : JSON.stringify(init.body),
        signal: init.signal,
        redirect: 'error',
      });
    } catch (error) {
      if (init.signal?.aborted) throw init.signal.reason;
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      throw new PortholeError('NETWORK_ERROR', `Cannot reach porthole at ${this.baseUrl} (${cause?.code ?? cause?.message ?? (error as Error).message}).`, {
        status: null,
        cause: error,
      });
    }
  }

  async #request<T>(method: 'GET' | 'POST' | 'DELETE', path: string, init: { query?: object; body?: unknown } = {}): Promise<T> {
    const response = await this.#send(method, path, init);
    if (!response.ok) throw await errorFromResponse(response, `${method} ${path}`);
    const text = await response.text();
    try {
      return JSON.parse(text) as T;
    } catch (error) {
      throw new PortholeError('INVALID_RESPONSE', `${method} ${path} answered HTTP ${response.status} with a body that is not JSON: ${text.slice(0, 200)}`, {
        status: response.status,
        cause: error,
      });
    }
  }

  #openStream(path: string, lastEventId: number | null, signal: AbortSignal): Promise<Response> {
    const headers: Record<string, string> = { accept: 'text/event-stream' };
    if (lastEventId !== null) headers['last-event-id'] = String(lastEventId);
    return this.#send('GET', path, { headers, signal });
  }
}

/** `promise`, or the signal's reason as soon as it aborts. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}
