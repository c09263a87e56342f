// The one way the browser pages talk to porthole's JSON API. Every failure becomes an ApiError that
// carries what the person needs to see (the server's sentence, its code and request id), so no
// caller has to parse responses or invent a bare "request failed".

/** The dashboard rides on its login cookie; the viewer page on its ticket alone. */
export type ApiAuth = 'cookie' | { ticket: string };

export interface ApiRequest {
  method?: 'GET' | 'POST' | 'DELETE';
  auth: ApiAuth;
  body?: unknown;
  /** A request to a dead server could hang for minutes; the pages must say something sooner. */
  timeoutMs?: number;
}

export class ApiError extends Error {
  /** The HTTP status, or 0 when no answer came (network down, server gone, timed out). */
  readonly status: number;
  /** The registry code from the body, or NETWORK / HTTP_<status> / BAD_RESPONSE when there was none. */
  readonly code: string;
  readonly requestId: string | undefined;

  constructor(status: number, code: string, message: string, requestId?: string) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }

  /** No answer, or an answer from something in front of porthole rather than porthole itself. */
  get isUnreachable(): boolean {
    return this.status === 0 || (this.status >= 500 && this.code.startsWith('HTTP_'));
  }
}

const defaultTimeoutMs = 10_000;

export async function requestJson<T>(path: string, request: ApiRequest): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (request.auth !== 'cookie') headers.authorization = `Ticket ${request.auth.ticket}`;
  // Only send a content type with a body: a JSON content type with an empty body is a 400 on Fastify.
  let body: string | undefined;
  if (request.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(request.body);
  }

  let response: Response;
  try {
    response = await fetch(path, {
      method: request.method ?? 'GET',
      headers,
      body,
      // The viewer must work from its ticket alone (as it will inside an embedding app's iframe),
      // so it does not send the dashboard's cookie even when it has one.
      credentials: request.auth === 'cookie' ? 'same-origin' : 'omit',
      cache: 'no-store',
      signal: AbortSignal.timeout(request.timeoutMs ?? defaultTimeoutMs),
    });
  } catch (error) {
    const timedOut = error instanceof DOMException && error.name === 'TimeoutError';
    throw new ApiError(0, 'NETWORK', timedOut ? 'The porthole server did not answer in time.' : 'The porthole server cannot be reached.');
  }

  const text = await response.text().catch(() => '');
  let parsed: unknown;
  try {
    parsed = text === '' ? undefined : JSON.parse(text);
  } catch {
    parsed = undefined;
  }

  if (!response.ok) {
    const error = (parsed as { error?: { code?: unknown; message?: unknown; requestId?: unknown } } | undefined)?.error;
    if (error && typeof error.code === 'string' && typeof error.message === 'string') {
      throw new ApiError(response.status, error.code, error.message, typeof error.requestId === 'string' ? error.requestId : undefined);
    }
    const statusText = response.statusText ? ` ${response.statusText}` : '';
    throw new ApiError(response.status, `HTTP_${response.status}`, `The server answered ${response.status}${statusText} without an error body.`);
  }
  if (parsed === undefined) {
    throw new ApiError(response.status, 'BAD_RESPONSE', 'The server answered with something that is not JSON.');
  }
  return parsed as T;
}

/** "message (CODE, request req_…)": the sentence plus what to quote when asking for help. */
export function describeApiError(error: unknown): string {
  if (!(error instanceof ApiError)) return error instanceof Error ? error.message : String(error);
  if (error.code === 'NETWORK') return error.message;
  const refs = [error.code, error.requestId ? `request ${error.requestId}` : ''].filter(Boolean).join(', ');
  return `${error.message} (${refs})`;
}
