import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { errorRegistry, type ErrorCode } from '../../protocol/errors.js';
import type { Metrics } from '../metrics.js';

// Answers for what Node's HTTP parser and Fastify's router refuse before any porthole handler runs:
// the same `{error: {code, message, requestId}}` body as every other error, instead of Fastify's
// `{"error":"Bad Request","message":"Client Error"}` or Node's empty 400/417.

/** The registry code for an error Node's parser raised on a connection (`clientError`). */
export function codeOfClientError(error: NodeJS.ErrnoException): ErrorCode {
  if (error.code === 'HPE_HEADER_OVERFLOW') return 'HEADERS_TOO_LARGE';
  if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') return 'REQUEST_TIMEOUT';
  return 'MALFORMED_REQUEST';
}

function errorBody(code: ErrorCode, requestId: string, message?: string): string {
  return JSON.stringify({ error: { code, message: message ?? errorRegistry[code].message, requestId } });
}

/**
 * For Fastify's `clientErrorHandler`: writes the registry answer on the raw socket (there is no
 * request object: the parser gave up), then destroys it, as Node's own handler does.
 */
export function answerClientError(error: NodeJS.ErrnoException, socket: Duplex, requestId: string, metrics: Metrics): void {
  // A reset connection has nobody left to answer.
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const code = codeOfClientError(error);
  metrics.errors.inc({ code, surface: 'http' });
  const { status } = errorRegistry[code];
  const body = errorBody(code, requestId);
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? code}\r\nConnection: close\r\nContent-Type: application/json\r\n` +
        `Cache-Control: no-store\r\nContent-Length: ${Buffer.byteLength(body)}\r\nX-Request-Id: ${requestId}\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}

/**
 * For the server's `checkExpectation` event (an `Expect` other than 100-continue), which Node
 * otherwise answers with an empty 417.
 */
export function answerExpectation(request: IncomingMessage, response: ServerResponse, requestId: string, metrics: Metrics): void {
  const code: ErrorCode = 'EXPECTATION_FAILED';
  metrics.errors.inc({ code, surface: 'http' });
  const body = errorBody(code, requestId);
  response.writeHead(errorRegistry[code].status, {
    connection: 'close',
    'content-type': 'application/json',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(body),
    'x-request-id': requestId,
  });
  response.end(body);
  request.resume();
}
