import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError, isErrorCode } from '../../protocol/errors.js';
import type { SessionEvent } from '../../protocol/session.js';
import type { EventFeed } from '../sessions/event-feed.js';

// Server-Sent Events (https://html.spec.whatwg.org/multipage/server-sent-events.html): a session's
// timeline, or every event an API key may see, as it happens. Each event is `id: <seq>` and
// `data: <SessionEvent JSON>`; a client that reconnects sends `Last-Event-ID` and misses none,
// because events commit in seq order (src/store/store.ts listAllEvents).

/** How long a stream may stay silent before a comment line keeps proxies from closing it. */
const keepAliveMs = 15_000;
/** How often a stream looks for events another server wrote (this server's own wake it at once). */
const pollMs = 1_000;
const pageSize = 500;

export function wantsEventStream(request: FastifyRequest): boolean {
  return (request.headers.accept ?? '').includes('text/event-stream');
}

/** Where a stream resumes: `Last-Event-ID` (a reconnect) wins over `?after=`. */
export function resumeAfter(request: FastifyRequest, after: number | undefined): number | undefined {
  const header = request.headers['last-event-id'];
  if (header === undefined || header === '') return after;
  const value = Number(header);
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new AppError('VALIDATION_FAILED', { message: 'Last-Event-ID must be the seq of an event (a non-negative integer).' });
  }
  return value;
}

export interface EventStreamOptions<Event extends { seq: number } = SessionEvent> {
  feed: EventFeed;
  after: number;
  /** Events after a seq, in order, at most `limit` (a session's, or a run's). */
  read(after: number, limit: number): Promise<Event[]>;
  /**
   * For a stream that ends: the session's state when terminal, else null. The stream ends once it
   * is terminal and every event written until then is sent.
   */
  finished?(): Promise<string | null>;
}

/** What a handler returns once it streamed its answer itself (app.ts then sends nothing). */
export const streamed: unique symbol = Symbol('streamed');
export type Streamed = typeof streamed;

/** Streams events until the client goes, the server closes, or (finished) the session ended. */
export async function streamEvents<Event extends { seq: number }>(
  request: FastifyRequest,
  reply: FastifyReply,
  options: EventStreamOptions<Event>,
): Promise<Streamed> {
  reply.hijack();
  const out = reply.raw;
  out.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    connection: 'keep-alive',
    // nginx and similar proxies pass each event on at once instead of buffering the response.
    'x-accel-buffering': 'no',
  });
  const gone = new AbortController();
  const onClose = () => gone.abort();
  request.raw.socket.once('close', onClose);
  out.once('close', onClose);
  const write = async (text: string) => {
    if (!out.write(text))
      await new Promise<void>((resolve) => {
        const done = () => {
          out.off('drain', done);
          out.off('close', done);
          resolve();
        };
        out.once('drain', done);
        out.once('close', done);
      });
  };
  let cursor = options.after;
  let lastWrite = Date.now();
  const send = async (event: Event) => {
    await write(`id: ${event.seq}\ndata: ${JSON.stringify(event)}\n\n`);
    cursor = event.seq;
    lastWrite = Date.now();
  };
  try {
    // A reconnecting EventSource waits this long; the SDK uses its own backoff.
    await write('retry: 1000\n\n');
    while (!gone.signal.aborted) {
      const events = await options.read(cursor, pageSize);
      for (const event of events) await send(event);
      if (events.length === pageSize) continue;
      if (options.finished) {
        const state = await options.finished();
        // Its last transition was written with the state: read once more, then end.
        if (state !== null) {
          for (const event of await options.read(cursor, pageSize)) await send(event);
          await write(`event: end\ndata: ${JSON.stringify({ state, lastSeq: cursor })}\n\n`);
          break;
        }
      }
      if (Date.now() - lastWrite >= keepAliveMs) {
        await write(': keep-alive\n\n');
        lastWrite = Date.now();
      }
      await options.feed.next(Math.min(pollMs, keepAliveMs), gone.signal);
    }
  } catch (error) {
    // Headers are sent: the failure goes in the stream, with its code, and the client reconnects.
    const code = error instanceof AppError && isErrorCode(error.code) ? error.code : 'INTERNAL';
    if (code === 'INTERNAL') request.log.error({ err: error }, 'event stream failed');
    if (!gone.signal.aborted)
      out.write(`event: error\ndata: ${JSON.stringify({ code, message: error instanceof Error ? error.message : String(error), requestId: request.id })}\n\n`);
  } finally {
    request.raw.socket.off('close', onClose);
    out.end();
  }
  return streamed;
}
