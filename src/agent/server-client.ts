import { setTimeout as sleep } from 'node:timers/promises';
import type { AgentEventBody, CredentialDelivery } from '../protocol/agent.js';

// The agent's side of the agent channel: two POSTs to the server, authenticated with the sandbox's
// own token (kept in this object's memory only). Network errors and 5xx are retried with a backoff;
// anything else the server refuses is final and reported with its status and error code.

export class DeliveryRefused extends Error {
  constructor(
    readonly status: number,
    readonly code: string | null,
  ) {
    super(`the server refused it: ${status}${code ? ` ${code}` : ''}`);
  }
}

const attempts = 6;
const firstBackoffMs = 250;
const requestTimeoutMs = 10_000;

export class ServerClient {
  readonly #base: string;
  readonly #token: string;

  constructor(serverUrl: string, sessionId: string, token: string) {
    this.#base = `${serverUrl.replace(/\/$/, '')}/v1/agent/sessions/${encodeURIComponent(sessionId)}`;
    this.#token = token;
  }

  event(type: AgentEventBody['type'], details: AgentEventBody['details'] = {}): Promise<number> {
    return this.#post('/events', { type, details } satisfies AgentEventBody);
  }

  /** 201: stored; 200: the same credential was stored before. */
  deliver(delivery: CredentialDelivery): Promise<number> {
    return this.#post('/credentials', delivery);
  }

  async #post(path: string, body: unknown): Promise<number> {
    let lastError: unknown = null;
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (attempt > 0) await sleep(firstBackoffMs * 2 ** (attempt - 1));
      try {
        const response = await fetch(this.#base + path, {
          method: 'POST',
          headers: { authorization: `Bearer ${this.#token}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(requestTimeoutMs),
        });
        const text = await response.text();
        if (response.ok) return response.status;
        const code = errorCodeOf(text);
        if (response.status < 500) throw new DeliveryRefused(response.status, code);
        lastError = new DeliveryRefused(response.status, code);
      } catch (error) {
        if (error instanceof DeliveryRefused && error.status < 500) throw error;
        lastError = error;
      }
    }
    throw lastError instanceof Error ? lastError : new Error(String(lastError));
  }
}

function errorCodeOf(text: string): string | null {
  try {
    const code = (JSON.parse(text) as { error?: { code?: unknown } }).error?.code;
    return typeof code === 'string' ? code : null;
  } catch {
    return null;
  }
}
