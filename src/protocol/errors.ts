// The one error registry. Every failure that crosses a boundary (HTTP response, WebSocket close,
// CLI exit, session reason) is one of these codes. WebSocket close codes are 4000 + HTTP status,
// with the code itself as the close reason. `docs/errors.md` documents every code; a test holds that.

export interface ErrorSpec {
  readonly status: number;
  readonly message: string;
}

export const errorRegistry = {
  VALIDATION_FAILED: { status: 400, message: 'The request does not match the schema.' },
  MALFORMED_JSON: { status: 400, message: 'The request body is not valid JSON.' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'The request body must be application/json.' },
  NOT_ACCEPTABLE: { status: 406, message: 'This route answers only as Server-Sent Events: send Accept: text/event-stream.' },
  BODY_TOO_LARGE: { status: 413, message: 'The request body is larger than the server accepts.' },
  MALFORMED_REQUEST: { status: 400, message: 'The request is not well-formed HTTP, or not a valid WebSocket upgrade.' },
  HEADERS_TOO_LARGE: { status: 431, message: 'The request’s headers are larger than the server accepts.' },
  EXPECTATION_FAILED: { status: 417, message: 'The server supports no Expect header but 100-continue.' },
  REQUEST_TIMEOUT: { status: 408, message: 'The request did not arrive in time.' },
  PROVIDER_UNKNOWN: { status: 400, message: 'No provider has that name.' },
  UNAUTHENTICATED: { status: 401, message: 'An API key (Authorization: Bearer …) or a dashboard login is required.' },
  API_KEY_INVALID: { status: 401, message: 'The API key is not valid.' },
  INTERNAL_AUTH_INVALID: { status: 401, message: 'The request between porthole’s servers and nodes is not signed with the cluster key.' },
  AGENT_TOKEN_INVALID: { status: 401, message: 'The sandbox token is missing or is not this session’s.' },
  LOGIN_TOKEN_INVALID: { status: 401, message: 'The login link is not valid, has expired or was already used; `porthole login-link` prints a new one.' },
  TICKET_MISSING: { status: 401, message: 'A viewer ticket is required.' },
  TICKET_INVALID: { status: 401, message: 'The viewer ticket is not valid.' },
  TICKET_EXPIRED: { status: 401, message: 'The viewer ticket has expired.' },
  TICKET_WRONG_SESSION: { status: 403, message: 'The viewer ticket belongs to another session.' },
  TICKET_RENEWAL_LIMIT: { status: 403, message: 'This viewer link has been renewed for as long as one may be; open the session again for a new link.' },
  ORIGIN_NOT_ALLOWED: { status: 403, message: 'The page opening this connection is not on an allowed origin.' },
  CSRF_REJECTED: { status: 403, message: 'A cookie-authenticated change must come from porthole’s own pages.' },
  RUN_FORBIDDEN: { status: 403, message: 'This API key did not start that run; an app key sees only its own runs.' },
  SESSION_FORBIDDEN: { status: 403, message: 'This API key did not create that session; an app key sees only its own sessions.' },
  API_KEY_ADMIN_REQUIRED: { status: 403, message: 'This route needs an admin API key or the dashboard; an app key cannot manage keys or see other apps.' },
  API_KEY_REQUIRED: { status: 403, message: 'This route needs an API key; a dashboard login or a viewer ticket is not enough.' },
  ROUTE_NOT_FOUND: { status: 404, message: 'No such route.' },
  SESSION_NOT_FOUND: { status: 404, message: 'No session has that id.' },
  NODE_NOT_FOUND: { status: 404, message: 'No porthole node has that id.' },
  RUN_NOT_FOUND: { status: 404, message: 'No run has that id.' },
  RUN_CANCELED: { status: 409, message: 'The run was stopped before its CLI finished (DELETE /v1/runs/:id).' },
  RUN_ELSEWHERE: { status: 409, message: 'The run is under way on another porthole server; stop it there.' },
  CREDENTIAL_BUSY: { status: 409, message: 'Another refresh or run holds this credential’s grant just now; try again shortly.' },
  TOO_MANY_RUNS: { status: 429, message: 'This server runs as many CLIs as it may at once; try again when one has finished.' },
  RUN_FAILED: { status: 500, message: 'The run could not be carried out.' },
  RUN_TIMEOUT: { status: 504, message: 'The CLI ran longer than the run’s time limit and was stopped.' },
  CREDENTIALS_NOT_FOUND: { status: 404, message: 'No credentials are stored for that session.' },
  CREDENTIAL_NEEDS_LOGIN: {
    status: 409,
    message: 'The provider refused to refresh this credential (revoked, or its refresh token was used elsewhere): the person must sign in again.',
  },
  CREDENTIAL_INVALID: { status: 422, message: 'The delivered credential file does not validate for its provider.' },
  CREDENTIAL_UNVERIFIED: { status: 422, message: 'The credential did not verify with the provider.' },
  AGENT_EVENT_TOO_LARGE: { status: 400, message: 'The agent event is larger than the server accepts.' },
  AGENT_EVENTS_RATE_LIMITED: { status: 429, message: 'The agent sends events faster than the server accepts; retry after the time in Retry-After.' },
  AGENT_EVENTS_LIMIT_REACHED: { status: 429, message: 'The session has as many agent events as the server keeps; later ones are refused.' },
  PROVIDER_MISMATCH: { status: 409, message: 'The delivery names a different provider than the session’s.' },
  SESSION_STATE_CONFLICT: { status: 409, message: 'The session changed state meanwhile; read it again.' },
  SESSION_NOT_READY: { status: 409, message: 'The session’s desktop is still starting.' },
  SESSION_IDLE_TIMEOUT: { status: 408, message: 'The session ended because no viewer was connected for too long.' },
  SESSION_ENDED: { status: 410, message: 'The session has ended.' },
  SESSION_EXPIRED: { status: 410, message: 'The session ended because it reached its maximum lifetime.' },
  SESSION_FAILED: { status: 410, message: 'The session failed.' },
  TOO_MANY_SESSIONS: { status: 429, message: 'The server runs as many sessions as it is configured for.' },
  NODE_FENCED: { status: 409, message: 'This node’s generation has moved on (it was declared lost or fenced itself): it may no longer change that session.' },
  NODE_LOST: { status: 424, message: 'The host running this session’s desktop stopped answering and was declared lost; the desktop is gone.' },
  KEY_ROTATION_UNAVAILABLE: { status: 409, message: 'The master key comes from PORTHOLE_MASTER_KEY(_FILE); porthole cannot rotate a key it does not keep.' },
  CREDENTIAL_FILE_EXISTS: { status: 409, message: 'A credential file already exists there; pass --force to replace it.' },
  INTERNAL: { status: 500, message: 'Internal error; the server log has the cause under this request id.' },
  CREDENTIAL_UNREADABLE: { status: 500, message: 'A stored credential does not decrypt: it was altered, or sealed with another key or for another session.' },
  CREDENTIAL_KEY_UNKNOWN: { status: 500, message: 'A stored credential was sealed with a master key this server does not have.' },
  MASTER_KEY_INVALID: { status: 500, message: 'The master key (PORTHOLE_MASTER_KEY or the keyring file) is malformed.' },
  MASTER_KEY_INSECURE: { status: 500, message: 'The keyring file is readable by other users; porthole requires mode 0600.' },
  SANDBOX_START_FAILED: { status: 502, message: 'The sandbox could not be started.' },
  LOGIN_START_FAILED: { status: 502, message: 'The sandbox’s agent could not start the provider login.' },
  SANDBOX_UNREACHABLE: { status: 502, message: 'The sandbox’s desktop does not answer.' },
  NODE_UNREACHABLE: { status: 502, message: 'The porthole node (host) running this session does not answer just now.' },
  AGENT_VERSION_MISMATCH: { status: 502, message: 'The sandbox’s agent runs a different version than the server.' },
  AGENT_UNHEALTHY: { status: 502, message: 'The sandbox’s agent answers but reports desktop processes that are not running.' },
  CREDENTIAL_VERIFY_UNAVAILABLE: { status: 503, message: 'The provider could not be asked to verify the credential; deliver it again.' },
  STORE_UNAVAILABLE: { status: 503, message: 'The database does not answer; nothing was changed.' },
  CREDENTIAL_REFRESH_UNAVAILABLE: { status: 503, message: 'The access token has expired and porthole could not refresh it just now; try again shortly.' },
  SERVER_SHUTTING_DOWN: { status: 503, message: 'The server is shutting down.' },
  NO_CAPACITY: { status: 503, message: 'No porthole node has room for another session: every live node is full or draining.' },
  BOOT_TIMEOUT: { status: 504, message: 'The sandbox did not become ready in time.' },
  SANDBOX_LIMIT_REACHED: { status: 507, message: 'The sandbox reached one of its resource limits (memory, processes) and was closed.' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof errorRegistry;

export const errorCodes = Object.keys(errorRegistry) as ErrorCode[];

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(errorRegistry, value);
}

/** WebSocket close code for an error: 4000 + its HTTP status. */
export function closeCodeOf(code: ErrorCode): number {
  return 4000 + errorRegistry[code].status;
}

/** The wire shape of every error response. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; requestId?: string; details?: Record<string, unknown> };
}

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, options: { message?: string; cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(options.message ?? errorRegistry[code].message, { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.status = errorRegistry[code].status;
    this.details = options.details;
  }
}
