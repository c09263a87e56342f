import { request } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AgentEventBody, CredentialDelivery } from '../protocol/agent.js';
import { backoffDelayMs, type Backoff } from '../protocol/backoff.js';

// The agent's side of the agent channel: two POSTs to the server, authenticated with the sandbox's
// own token (kept in this object's memory only). Network errors and 5xx are retried with a backoff;
// anything else the server refuses is final and reported with its status and error code.
// The server is `unix:<path>` (a sandbox with no network: the agent channel socket the server
// listens on for this sandbox alone) or an http:// URL.

export class DeliveryRefused extends Error {
  constructor(
    readonly status: number,
    readonly code: string | null,
  ) {
    super(`the server refused it: ${status}${code ? ` ${code}` : ''}`);
  }
}

const attempts = 6;
/** 250 ms, 0.5 s, 1 s, 2 s, 4 s between the attempts. */
const retryBackoff: Backoff = { firstMs: 250, maxMs: 4_000 };
const requestTimeoutMs = 10_000;

export class ServerClient {
  readonly #target: { socketPath: string } | { host: string; port: number };
  readonly #base: string;
  readonly #token: string;

  constructor(serverUrl: string, sessionId: string, token: string) {
    const path = `/v1/agent/sessions/${encodeURIComponent(sessionId)}`;
    if (serverUrl.startsWith('unix:')) {
      this.#target = { socketPath: serverUrl.slice('unix:'.length) };
      this.#base = path;
    } else {
      const url = new URL(serverUrl);
      this.#target = { host: url.hostname, port: Number(url.port || 80) };
      this.#base = `${url.pathname.replace(/\/$/, '')}${path}`;
    }
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
      if (attempt > 0) await sleep(backoffDelayMs(retryBackoff, attempt - 1));
      try {
        const response = await this.#request(this.#base + path, JSON.stringify(body));
        const text = response.text;
        if (response.status >= 200 && response.status < 300) return response.status;
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

  #request(path: string, payload: string): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const headers = { authorization: `Bearer ${this.#token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) };
      const req = request({ ...this.#target, path, method: 'POST', headers, signal: AbortSignal.timeout(requestTimeoutMs) }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(payload);
    });
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
