import type { ApiKey, WebhookDeliveryView } from '../protocol/apps.js';
import { AppError, isErrorCode } from '../protocol/errors.js';
import type { AccessTokenResponse, CredentialResponse, KeyRotationResponse } from '../protocol/credentials.js';
import { readEventPages } from '../protocol/event-pages.js';
import type { CreateRunBody, Run, RunEvent } from '../protocol/runs.js';
import type { Session, SessionEvent, SessionEventsPage, TicketResponse } from '../protocol/session.js';
import { createParser } from 'eventsource-parser';

/** A small typed client of porthole's HTTP API, for the CLI (and usable by scripts and benches). */
export class ApiClient {
  constructor(
    readonly baseUrl: string,
    readonly apiKey: string | null,
  ) {}

  static fromEnv(env: Record<string, string | undefined>): ApiClient {
    return new ApiClient((env.PORTHOLE_URL ?? 'http://127.0.0.1:8480').replace(/\/+$/, ''), env.PORTHOLE_API_KEY ?? null);
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {};
    if (this.apiKey) headers.authorization = `Bearer ${this.apiKey}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let response: Response;
    try {
      response = await fetch(`${this.baseUrl}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (error) {
      const cause = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message;
      throw new Error(`cannot reach porthole at ${this.baseUrl} (${cause}); is it running? (PORTHOLE_URL)`);
    }
    const text = await response.text();
    const json = text ? (JSON.parse(text) as unknown) : null;
    if (!response.ok) {
      const error = (json as { error?: { code?: string; message?: string } } | null)?.error;
      if (error && isErrorCode(error.code)) throw new AppError(error.code, { message: error.message ?? error.code });
      throw new Error(`HTTP ${response.status} from ${method} ${path}`);
    }
    return json as T;
  }

  /** Starts a run of the provider's CLI with a stored credential. */
  createRun(body: Partial<CreateRunBody>): Promise<Run> {
    return this.request('POST', '/v1/runs', body);
  }

  getRun(id: string): Promise<Run> {
    return this.request('GET', `/v1/runs/${encodeURIComponent(id)}`);
  }

  /** The run's timeline and output, live (Server-Sent Events), until the run is over. */
  async *runEvents(id: string, signal?: AbortSignal): AsyncGenerator<RunEvent> {
    const headers: Record<string, string> = { accept: 'text/event-stream' };
    if (this.apiKey) headers.authorization = `Bearer ${this.apiKey}`;
    const response = await fetch(`${this.baseUrl}/v1/runs/${encodeURIComponent(id)}/events`, { headers, signal });
    if (!response.ok || !response.body) {
      const error = ((await response.json().catch(() => null)) as { error?: { code?: string; message?: string } } | null)?.error;
      if (error && isErrorCode(error.code)) throw new AppError(error.code, { message: error.message ?? error.code });
      throw new Error(`HTTP ${response.status} from GET /v1/runs/${id}/events`);
    }
    const queue: RunEvent[] = [];
    let isEnd = false;
    const parser = createParser({
      onEvent: (message) => {
        if (message.event === 'end') isEnd = true;
        else if (!message.event || message.event === 'message') queue.push(JSON.parse(message.data) as RunEvent);
      },
    });
    const decoder = new TextDecoder();
    const reader = response.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        parser.feed(decoder.decode(value, { stream: true }));
        while (queue.length > 0) yield queue.shift()!;
        if (isEnd) return;
      }
    } finally {
      await reader.cancel().catch(() => {});
    }
  }

  createSession(body: { provider?: string; userId?: string }): Promise<Session> {
    return this.request('POST', '/v1/sessions', body);
  }
  listSessions(filter: { userId?: string; state?: string } = {}): Promise<{ sessions: Session[] }> {
    const query = new URLSearchParams();
    if (filter.userId) query.set('userId', filter.userId);
    if (filter.state) query.set('state', filter.state);
    return this.request('GET', `/v1/sessions${query.size > 0 ? `?${query}` : ''}`);
  }
  getSession(id: string): Promise<Session> {
    return this.request('GET', `/v1/sessions/${encodeURIComponent(id)}`);
  }
  endSession(id: string): Promise<Session> {
    return this.request('DELETE', `/v1/sessions/${encodeURIComponent(id)}`);
  }
  /** Every event after `after` (all of them by default), reading the timeline page by page. */
  async listEvents(id: string, after = 0): Promise<{ events: SessionEvent[] }> {
    return { events: await readEventPages(after, (next) => this.listEventsPage(id, { after: next })) };
  }
  /** One page of the timeline: `limit` events (the server's default when absent) after `after`. */
  listEventsPage(id: string, options: { after?: number; limit?: number } = {}): Promise<SessionEventsPage> {
    const query = new URLSearchParams();
    if (options.after) query.set('after', String(options.after));
    if (options.limit) query.set('limit', String(options.limit));
    const search = query.size > 0 ? `?${query}` : '';
    return this.request('GET', `/v1/sessions/${encodeURIComponent(id)}/events${search}`);
  }
  createTicket(id: string): Promise<TicketResponse> {
    return this.request('POST', `/v1/sessions/${encodeURIComponent(id)}/ticket`);
  }
  /** The captured credential file; the server records the read on the session's timeline. */
  getCredentials(id: string): Promise<CredentialResponse> {
    return this.request('GET', `/v1/sessions/${encodeURIComponent(id)}/credentials`);
  }
  /** A fresh access token alone (no refresh token). */
  getAccessToken(id: string): Promise<AccessTokenResponse> {
    return this.request('GET', `/v1/sessions/${encodeURIComponent(id)}/credentials/access-token`);
  }

  /** A new session for the same user and provider (a credential that needs a new sign-in). */
  signInAgain(id: string): Promise<Session> {
    return this.request('POST', `/v1/sessions/${encodeURIComponent(id)}/sign-in-again`);
  }

  rotateKeys(): Promise<KeyRotationResponse> {
    return this.request('POST', '/v1/keys/rotate');
  }
  createKey(body: { name: string; admin?: boolean; webhookUrl?: string }): Promise<ApiKey & { key: string; webhookSecret: string | null }> {
    return this.request('POST', '/v1/keys', body);
  }
  listKeys(): Promise<{ keys: ApiKey[] }> {
    return this.request('GET', '/v1/keys');
  }
  revokeKey(id: string): Promise<ApiKey> {
    return this.request('DELETE', `/v1/keys/${encodeURIComponent(id)}`);
  }
  listDeliveries(sessionId?: string): Promise<{ deliveries: WebhookDeliveryView[] }> {
    return this.request('GET', `/v1/webhooks/deliveries${sessionId ? `?sessionId=${encodeURIComponent(sessionId)}` : ''}`);
  }
  createLoginLink(): Promise<{ url: string; expiresAt: string }> {
    return this.request('POST', '/v1/login-links');
  }
}
