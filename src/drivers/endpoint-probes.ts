import { lstat } from 'node:fs/promises';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { StringDecoder } from 'node:string_decoder';
import { agentHealthSchema, agentRunLine, type AgentHealth, type AgentLoginRequest, type AgentRunLine, type AgentRunRequest } from '../protocol/agent.js';
import { AppError } from '../protocol/errors.js';
import type { Endpoint } from './driver.js';
import { pinSocket } from './pinned-socket.js';
import { probeRfbBanner, RfbError, socketTransport } from './rfb-client.js';
import { timeoutSignal } from './timeout-signal.js';

// Probes of a sandbox's endpoints, for the server's readiness check and the driver conformance
// suite. Every failure is AppError('SANDBOX_UNREACHABLE') whose details name the endpoint and keep
// the errno code (ENOENT: the socket is not there yet, ECONNREFUSED: nothing listens, ETIMEDOUT),
// so "not ready yet" and "broken" can be told apart and reported with their cause.

const defaultTimeoutMs = 2_000;
const maxHealthBytes = 64 * 1024;

export function describeEndpoint(endpoint: Endpoint): string {
  return endpoint.kind === 'unix' ? `unix:${endpoint.path}` : `tcp:${endpoint.host}:${endpoint.port}`;
}

function unreachable(endpoint: Endpoint, cause: unknown, details: Record<string, unknown> = {}): AppError {
  if (cause instanceof AppError) return cause;
  const errno = cause as NodeJS.ErrnoException | undefined;
  const code = details.code ?? (errno && typeof errno.code === 'string' ? errno.code : undefined);
  return new AppError('SANDBOX_UNREACHABLE', {
    cause,
    details: { endpoint: describeEndpoint(endpoint), ...(code ? { code } : {}), ...(errno?.syscall ? { syscall: errno.syscall } : {}), ...details },
  });
}

/** Its home is ./timeout-signal.ts; re-exported until the session manager imports it from there. */
export { timeoutSignal } from './timeout-signal.js';

function withTimeout(signal: AbortSignal | undefined, timeoutMs: number): AbortSignal {
  const timeout = timeoutSignal(timeoutMs);
  return signal ? AbortSignal.any([signal, timeout]) : timeout;
}

/** A TimeoutError reason becomes ETIMEDOUT, any other abort ABORT_ERR. */
function abortCode(signal: AbortSignal): string {
  return (signal.reason as Error | undefined)?.name === 'TimeoutError' ? 'ETIMEDOUT' : 'ABORT_ERR';
}

/** An unpinned unix endpoint must at least be a socket, not a symlink to one. */
async function checkUnixSocket(endpoint: Endpoint): Promise<void> {
  if (endpoint.kind !== 'unix') return;
  const stats = await lstat(endpoint.path).catch((error: unknown) => {
    throw unreachable(endpoint, error);
  });
  if (!stats.isSocket()) throw unreachable(endpoint, new Error(`${endpoint.path} is not a socket`), { code: 'ENOTSOCK' });
}

/**
 * Opens a stream to the endpoint. Rejects with AppError('SANDBOX_UNREACHABLE'). A pinned unix
 * endpoint (a sandbox's socket: see pinned-socket.ts) is connected only through its pin, pinned
 * again when it is missing or its server has restarted (ECONNREFUSED on the old inode).
 */
export async function connectEndpoint(endpoint: Endpoint, signal?: AbortSignal): Promise<Socket> {
  if (signal?.aborted) throw unreachable(endpoint, signal.reason, { code: abortCode(signal) });
  if (endpoint.kind === 'unix' && endpoint.pin) {
    const pin = endpoint.pin;
    try {
      return await connectOnce(endpoint, signal);
    } catch (error) {
      const code = error instanceof AppError ? (error.details as { code?: unknown } | undefined)?.code : undefined;
      if (code !== 'ENOENT' && code !== 'ECONNREFUSED') throw error;
    }
    await pinSocket(pin, endpoint.path).catch((error: unknown) => {
      throw unreachable(endpoint, error, { reason: error instanceof Error ? error.message : String(error) });
    });
    return connectOnce(endpoint, signal);
  }
  await checkUnixSocket(endpoint);
  return connectOnce(endpoint, signal);
}

function connectOnce(endpoint: Endpoint, signal: AbortSignal | undefined): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = endpoint.kind === 'unix' ? connect({ path: endpoint.path }) : connect({ host: endpoint.host, port: endpoint.port });
    const onAbort = (): void => {
      socket.destroy();
      reject(unreachable(endpoint, signal!.reason, { code: abortCode(signal!) }));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('error', (error) => {
      signal?.removeEventListener('abort', onAbort);
      reject(unreachable(endpoint, error));
    });
    socket.once('connect', () => {
      signal?.removeEventListener('abort', onAbort);
      resolve(socket);
    });
  });
}

/** One HTTP request to the agent (unix socket or TCP); the body is capped at 64 KiB. */
async function agentRequest(
  endpoint: Endpoint,
  method: 'GET' | 'POST',
  path: string,
  json: unknown,
  options: { signal?: AbortSignal | undefined; timeoutMs?: number | undefined },
): Promise<{ status: number; body: string }> {
  const signal = withTimeout(options.signal, options.timeoutMs ?? defaultTimeoutMs);
  const socket = await connectEndpoint(endpoint, signal);
  const payload = json === undefined ? undefined : JSON.stringify(json);
  const headers: Record<string, string | number> = { accept: 'application/json' };
  if (payload !== undefined) Object.assign(headers, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) });
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request({ createConnection: () => socket, path, method, headers, signal }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
        if (body.length > maxHealthBytes) req.destroy(new Error(`agent response larger than ${maxHealthBytes} bytes`));
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', (error) => reject(signal.aborted ? unreachable(endpoint, error, { code: abortCode(signal) }) : unreachable(endpoint, error)));
    req.end(payload);
  });
}

/** GET /health on the agent, validated against the shared schema. */
export async function fetchAgentHealth(endpoint: Endpoint, options: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<AgentHealth> {
  const { status, body } = await agentRequest(endpoint, 'GET', '/health', undefined, options);
  if (status !== 200) throw unreachable(endpoint, new Error(`GET /health answered ${status}`), { status, body: body.slice(0, 200) });
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (error) {
    throw unreachable(endpoint, error, { reason: 'GET /health is not JSON', body: body.slice(0, 200) });
  }
  const parsed = agentHealthSchema.safeParse(json);
  if (!parsed.success) throw unreachable(endpoint, parsed.error, { reason: 'GET /health does not match the agent schema', issues: parsed.error.issues });
  return parsed.data;
}

/**
 * POST /login: hands the agent the sandbox token and starts the provider login. Resolves once the
 * agent has started it (202); otherwise rejects with AppError('LOGIN_START_FAILED') carrying the
 * agent's own reason (e.g. it could not reach the server), or SANDBOX_UNREACHABLE.
 */
export async function startAgentLogin(endpoint: Endpoint, login: AgentLoginRequest, options: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<void> {
  const { status, body } = await agentRequest(endpoint, 'POST', '/login', login, options);
  if (status === 202) return;
  let reason = body.slice(0, 500);
  try {
    const error = (JSON.parse(body) as { error?: unknown }).error;
    if (typeof error === 'string') reason = error;
  } catch {
    // not JSON: keep the text
  }
  throw new AppError('LOGIN_START_FAILED', {
    message: `The agent answered ${status}: ${reason}`,
    details: { endpoint: describeEndpoint(endpoint), status, reason },
  });
}

/**
 * The banner-only probe (rfb-client.ts): reads the server's 12-byte protocol banner
 * (`RFB 003.008\n`), then closes. Rejects with AppError('SANDBOX_UNREACHABLE'), code ECONNRESET or
 * EPROTO with what the server sent (`received`), the abort's ETIMEDOUT/ABORT_ERR, or the socket's errno.
 */
export async function readRfbBanner(endpoint: Endpoint, options: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<string> {
  const signal = withTimeout(options.signal, options.timeoutMs ?? defaultTimeoutMs);
  const socket = await connectEndpoint(endpoint, signal);
  try {
    return await probeRfbBanner(socketTransport(socket), { signal });
  } catch (error) {
    if (!(error instanceof RfbError)) throw unreachable(endpoint, error);
    if (signal.aborted) throw unreachable(endpoint, signal.reason, { code: abortCode(signal), received: error.received });
    if (error.cause !== undefined) throw unreachable(endpoint, error.cause);
    throw unreachable(endpoint, new Error(error.message), { code: error.code, received: error.received });
  } finally {
    socket.destroy();
  }
}

/** The longest NDJSON line of a run the client takes: an output chunk (64 Ki characters, JSON-escaped) or the exit line with its credential. */
const maxRunLineChars = 1024 * 1024;

type RunExit = Extract<AgentRunLine, { type: 'exit' }>;

/**
 * POST /run: hands the agent a run (a sandbox started with `desktop: false`) and reads its NDJSON
 * answer, calling `onLine` with each line as it arrives (`started`, `output`…, then `exit`).
 * Resolves with the `exit` line. Rejects with AppError('SANDBOX_UNREACHABLE') naming the reason
 * when the agent cannot be reached, refuses the run (its status and words: 400, 409), answers an
 * `error` line, sends a line that is not one of the contract's, or ends without an `exit`.
 * Aborting `signal` closes the connection, and the agent kills the run. Not idempotent: a sandbox
 * runs once. The connection has no overall deadline (the agent ends the run at `timeoutMs`);
 * only connecting is bounded.
 */
export async function runOnAgent(
  endpoint: Endpoint,
  run: AgentRunRequest,
  options: { signal?: AbortSignal; onLine?: (line: AgentRunLine) => void } = {},
): Promise<RunExit> {
  const { signal } = options;
  const socket = await connectEndpoint(endpoint, withTimeout(signal, defaultTimeoutMs));
  const payload = JSON.stringify(run);
  const headers = { accept: 'application/x-ndjson', 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) };
  const failed = (reason: string, details: Record<string, unknown> = {}, cause?: unknown): AppError =>
    new AppError('SANDBOX_UNREACHABLE', {
      message: `The run ${run.runId} failed in the sandbox: ${reason}`,
      cause,
      details: { endpoint: describeEndpoint(endpoint), runId: run.runId, reason, ...details },
    });
  return new Promise<RunExit>((resolve, reject) => {
    let isSettled = false;
    const settle = (outcome: { exit: RunExit } | { error: AppError }): void => {
      if (isSettled) return;
      isSettled = true;
      if ('exit' in outcome) resolve(outcome.exit);
      else reject(outcome.error);
      req.destroy();
    };
    const req = request({ createConnection: () => socket, path: '/run', method: 'POST', headers, ...(signal ? { signal } : {}) }, (res) => {
      if (res.statusCode !== 200) {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          if (body.length < maxHealthBytes) body += chunk;
        });
        res.on('end', () => {
          let reason = body.slice(0, 500);
          try {
            const error = (JSON.parse(body) as { error?: unknown }).error;
            if (typeof error === 'string') reason = error;
          } catch {
            // not JSON: keep the text
          }
          settle({ error: failed(`the agent answered ${res.statusCode}: ${reason}`, { status: res.statusCode }) });
        });
        return;
      }
      const decoder = new StringDecoder('utf8');
      let pending = '';
      const take = (text: string): void => {
        if (!text) return;
        const lines = (pending + text).split('\n');
        pending = lines.pop() ?? '';
        if (pending.length > maxRunLineChars) {
          settle({ error: failed(`a line longer than ${maxRunLineChars} characters`) });
          return;
        }
        for (const raw of lines) {
          if (isSettled) return;
          if (!raw.trim()) continue;
          let json: unknown;
          try {
            json = JSON.parse(raw);
          } catch {
            // Not the parser's message as the cause: it quotes the line, which may hold the credential.
            settle({ error: failed('a line that is not JSON') });
            return;
          }
          const parsed = agentRunLine.safeParse(json);
          if (!parsed.success) {
            settle({ error: failed('a line that does not match the run schema', { issues: parsed.error.issues }) });
            return;
          }
          const line = parsed.data;
          try {
            options.onLine?.(line);
          } catch (error) {
            settle({ error: failed(`onLine threw: ${error instanceof Error ? error.message : String(error)}`, {}, error) });
            return;
          }
          if (line.type === 'exit') {
            settle({ exit: line });
            return;
          }
          if (line.type === 'error') {
            settle({ error: failed(line.reason) });
            return;
          }
        }
      };
      res.on('data', (chunk: Buffer) => take(decoder.write(chunk)));
      res.on('end', () => {
        take(`${decoder.end()}\n`);
        settle({ error: failed('the answer ended with no exit line') });
      });
      res.on('error', (error) => settle({ error: signal?.aborted ? unreachable(endpoint, error, { code: abortCode(signal) }) : unreachable(endpoint, error) }));
      res.on('close', () => settle({ error: failed('the connection closed with no exit line') }));
    });
    req.on('error', (error) =>
      settle({
        error: signal?.aborted ? unreachable(endpoint, error, { code: abortCode(signal) }) : failed(`the connection failed: ${error.message}`, {}, error),
      }),
    );
    req.end(payload);
  });
}
