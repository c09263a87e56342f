import type { ServerErrorCode, Session } from './types.js';

/**
 * Codes the SDK itself gives, when there is no answer from the server to carry one:
 * `NETWORK_ERROR` porthole could not be reached; `INVALID_RESPONSE` it answered with something
 * that is not its API (a proxy's error page); `WAIT_TIMEOUT` waitFor ran out of time;
 * `WAIT_STATE_UNREACHABLE` the session settled in a terminal state waitFor was not waiting for.
 */
export type ClientErrorCode = 'NETWORK_ERROR' | 'INVALID_RESPONSE' | 'WAIT_TIMEOUT' | 'WAIT_STATE_UNREACHABLE';
export type PortholeErrorCode = ServerErrorCode | ClientErrorCode;

export interface PortholeErrorOptions {
  /** The HTTP status, or null when no response carries the error (network, waitFor). */
  status: number | null;
  requestId?: string | null;
  details?: Record<string, unknown>;
  /** The session as last read, for the waitFor codes. */
  session?: Session;
  cause?: unknown;
}

/**
 * Every failure of a Porthole call: the server's error (its stable `code`, HTTP `status`, `message`
 * and `requestId`, to quote when asking the operator) or one of the SDK's own codes.
 */
export class PortholeError extends Error {
  override readonly name = 'PortholeError';
  readonly code: PortholeErrorCode;
  readonly status: number | null;
  readonly requestId: string | null;
  readonly details: Record<string, unknown>;
  readonly session: Session | null;

  constructor(code: PortholeErrorCode, message: string, options: PortholeErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = options.status;
    this.requestId = options.requestId ?? null;
    this.details = options.details ?? {};
    this.session = options.session ?? null;
  }
}

/** Whether `error` is a PortholeError, and with `code` when given. */
export function isPortholeError(error: unknown, code?: PortholeErrorCode): error is PortholeError {
  return error instanceof PortholeError && (code === undefined || error.code === code);
}

/** The PortholeError an unsuccessful response stands for (it reads the body). */
export async function errorFromResponse(response: Response, what: string): Promise<PortholeError> {
  const text = await response.text().catch(() => '');
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: not porthole answering (a proxy in between, or the wrong URL)
  }
  const error = (body as { error?: { code?: unknown; message?: unknown; requestId?: unknown; details?: unknown } } | null)?.error;
  if (error && typeof error.code === 'string') {
    return new PortholeError(error.code as ServerErrorCode, typeof error.message === 'string' ? error.message : error.code, {
      status: response.status,
      requestId: typeof error.requestId === 'string' ? error.requestId : null,
      details: error.details && typeof error.details === 'object' ? (error.details as Record<string, unknown>) : {},
    });
  }
  return new PortholeError('INVALID_RESPONSE', `${what} answered HTTP ${response.status} without a porthole error body: ${text.slice(0, 200)}`, {
    status: response.status,
  });
}
