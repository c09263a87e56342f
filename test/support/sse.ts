import { createParser, type EventSourceMessage } from 'eventsource-parser';

// A Server-Sent Events client for tests: fetch() and a well-kept parser, so a test sees each event
// as the wire carries it (id, event name, data) and can drop the connection when it chooses.

export interface EventStream {
  /** Every message so far, in order; `next()` waits for more. */
  readonly messages: EventSourceMessage[];
  /** Resolves when the server ends the stream (or the connection drops). */
  readonly ended: Promise<void>;
  /** Drops the connection, as a network failure would. */
  close(): void;
}

/** Opens `url` as an event stream; rejects with the status and body when the server refuses it. */
export async function openEventStream(url: string, headers: Record<string, string> = {}): Promise<EventStream> {
  const controller = new AbortController();
  const response = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: controller.signal });
  if (!response.ok || !response.body) throw new Error(`event stream ${url}: HTTP ${response.status} ${await response.text()}`);
  const messages: EventSourceMessage[] = [];
  const parser = createParser({ onEvent: (message) => messages.push(message) });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const ended = (async () => {
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        parser.feed(value);
      }
    } catch {
      // Aborted by close(), or the connection dropped: either way the stream is over.
    }
  })();
  return { messages, ended, close: () => controller.abort() };
}
