import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { errorFromResponse, PortholeError } from './errors.js';

// One Server-Sent Events stream of porthole's (a session's events, or the firehose), read as an
// async iterator that survives dropped connections: it reconnects with `Last-Event-ID: <last seq>`
// after a backoff, so the server resumes right after the last event handed out and none is lost or
// repeated. It ends at the server's `end` event (a session stream, once the session is terminal and
// every event was sent), when the signal aborts, or on an error a retry cannot fix (a 4xx).

export interface SseOptions {
  /** Opens the stream; `lastEventId` is the last seq handed out (or the caller's `after`), null at the very start. */
  open(lastEventId: number | null, signal: AbortSignal): Promise<Response>;
  /** What the stream is, for error messages. */
  what: string;
  after?: number | null;
  signal?: AbortSignal;
  /** First reconnection delay; doubles up to maxDelayMs. A `retry:` field from the server sets it. */
  minDelayMs?: number;
  maxDelayMs?: number;
}

/** HTTP statuses worth another try: the server or a proxy in front of it is busy or restarting. */
const retryableStatuses = new Set([408, 425, 429, 500, 502, 503, 504]);

export async function* readEventStream<T extends { seq: number }>(options: SseOptions): AsyncGenerator<T, void, undefined> {
  const { signal } = options;
  let lastEventId = options.after ?? null;
  let minDelayMs = options.minDelayMs ?? 250;
  const maxDelayMs = options.maxDelayMs ?? 15_000;
  let failures = 0;
  while (true) {
    signal?.throwIfAborted();
    // Aborted when the caller's signal aborts, and when this generator is left (break, return, throw).
    const connection = new AbortController();
    const onAbort = () => connection.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      let response: Response | null = null;
      try {
        response = await options.open(lastEventId, connection.signal);
      } catch (error) {
        signal?.throwIfAborted();
        // Unreachable (refused, reset, DNS): retried below; anything else is not the network's doing.
        if (!(error instanceof PortholeError) || error.code !== 'NETWORK_ERROR') throw error;
      }
      if (response && !response.ok) {
        const error = await errorFromResponse(response, options.what);
        if (!retryableStatuses.has(response.status)) throw error;
        response = null;
      }
      if (response) {
        if (!response.body || !(response.headers.get('content-type') ?? '').includes('text/event-stream')) {
          throw new PortholeError(
            'INVALID_RESPONSE',
            `${options.what} did not answer with an event stream (content-type ${response.headers.get('content-type')})`,
            {
              status: response.status,
            },
          );
        }
        const pending: EventSourceMessage[] = [];
        const parser = createParser({
          onEvent: (message) => pending.push(message),
          onRetry: (ms) => {
            minDelayMs = ms;
          },
        });
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        try {
          while (true) {
            const { value, done } = await reader.read();
            if (done) break;
            parser.feed(value);
            for (let message = pending.shift(); message; message = pending.shift()) {
              if (message.event === 'end') return;
              if (message.event !== undefined && message.event !== 'message') continue;
              const event = JSON.parse(message.data) as T;
              lastEventId = message.id ? Number(message.id) : event.seq;
              failures = 0;
              yield event;
            }
          }
        } catch (error) {
          signal?.throwIfAborted();
          if (error instanceof SyntaxError) {
            throw new PortholeError('INVALID_RESPONSE', `${options.what} sent an event that is not JSON`, { status: response.status, cause: error });
          }
          // The connection dropped mid-stream: reconnect below.
        } finally {
          await reader.cancel().catch(() => {});
        }
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      connection.abort();
    }
    // Dropped, refused or a busy server: wait, then resume after the last event seen.
    const delayMs = Math.min(maxDelayMs, minDelayMs * 2 ** failures) * (0.8 + Math.random() * 0.4);
    failures++;
    await sleep(delayMs, signal);
  }
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
