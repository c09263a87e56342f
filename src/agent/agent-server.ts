import { rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import {
  agentLoginRequest,
  agentRunRequest,
  maxCredentialBytes,
  maxRunFileBytes,
  type AgentHealth,
  type AgentLoginRequest,
  type AgentRunRequest,
} from '../protocol/agent.js';
import type { RunSink } from './run.js';

// What the agent serves on its unix socket (reachable by the server through the sandbox's run
// directory, and by the sandbox's own processes):
//   GET  /health  its version, the desktop's processes and the login's phase
//   POST /login   the server starts the provider login, handing over the sandbox's token (once)
//   POST /open    the browser wrappers (xdg-open & co.) ask for a URL in the sandbox's Chromium
//   POST /run     in a sandbox with no desktop: runs the provider's CLI once, answering NDJSON lines

export interface AgentHandlers {
  health(): AgentHealth;
  /** Resolves once the login runs; rejects with the reason it could not start. */
  login(request: AgentLoginRequest): Promise<void>;
  isLoginStarted(): boolean;
  open(url: URL): Promise<void>;
  /** Why a run cannot start (409), or null. */
  runRefusal(): string | null;
  /** Why the run's request is unusable (400), or null. */
  runProblem(request: AgentRunRequest): string | null;
  /** The run: resolves after its last line went to `sink`. */
  run(request: AgentRunRequest, sink: RunSink): Promise<void>;
  /** Every request renews the sandbox's lease (the server asks /health on each reconcile tick). */
  contacted(): void;
}

const maxBodyBytes = 16 * 1024;
/** A run's request: its files, the credential, and room for the arguments (a prompt) and the JSON around them. */
const maxRunBodyBytes = 2 * (maxRunFileBytes + maxCredentialBytes) + 1024 * 1024;
/** While a run streams, its open connection renews the lease (the server is there to read it). */
const runLeaseRenewMs = 1_000;

function send(response: ServerResponse, status: number, body?: unknown): void {
  if (body === undefined) {
    response.writeHead(status).end();
    return;
  }
  const text = JSON.stringify(body);
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  response.end(text);
}

async function readBody(request: IncomingMessage, maxBytes = maxBodyBytes): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw new Error(`body larger than ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function readJson(request: IncomingMessage): Promise<unknown> {
  return JSON.parse(await readBody(request));
}

export async function serveAgent(socketPath: string, handlers: AgentHandlers): Promise<Server> {
  const server = createServer((request, response) => {
    void route(request, response).catch((error: unknown) => {
      if (!response.headersSent) send(response, 400, { error: error instanceof Error ? error.message : String(error) });
    });
  });

  async function route(request: IncomingMessage, response: ServerResponse): Promise<void> {
    handlers.contacted();
    const key = `${request.method} ${request.url}`;
    if (key === 'GET /health') return send(response, 200, handlers.health());
    if (key === 'POST /login') {
      const parsed = agentLoginRequest.safeParse(await readJson(request));
      if (!parsed.success) return send(response, 400, { error: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') });
      // Once only: the first caller's token is the one the agent delivers with.
      if (handlers.isLoginStarted()) return send(response, 409, { error: 'a login was started already' });
      try {
        await handlers.login(parsed.data);
      } catch (error) {
        return send(response, 502, { error: error instanceof Error ? error.message : String(error) });
      }
      return send(response, 202, { started: true });
    }
    if (key === 'POST /open') {
      // The browser wrappers send the URL as the body (text/plain); JSON {url} is also taken.
      const text = await readBody(request);
      const raw = request.headers['content-type']?.startsWith('text/plain') ? text.trim() : (JSON.parse(text) as { url?: unknown }).url;
      const url = typeof raw === 'string' && URL.canParse(raw) ? new URL(raw) : null;
      if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) return send(response, 400, { error: 'an http(s) url is required' });
      await handlers.open(url);
      return send(response, 204);
    }
    if (key === 'POST /run') return serveRun(request, response);
    send(response, 404, { error: 'not found' });
  }

  async function serveRun(request: IncomingMessage, response: ServerResponse): Promise<void> {
    let json: unknown;
    try {
      json = JSON.parse(await readBody(request, maxRunBodyBytes));
    } catch (error) {
      // Never the parser's message: it quotes the body, and the body holds the credential.
      const isTooLarge = error instanceof Error && error.message.startsWith('body larger');
      return send(response, isTooLarge ? 413 : 400, { error: isTooLarge ? error.message : 'the body is not JSON' });
    }
    const parsed = agentRunRequest.safeParse(json);
    if (!parsed.success) return send(response, 400, { error: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') });
    const problem = handlers.runProblem(parsed.data);
    if (problem) return send(response, 400, { error: problem });
    const refusal = handlers.runRefusal();
    if (refusal) return send(response, 409, { error: refusal });

    response.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    const gone = new AbortController();
    response.once('close', () => {
      if (!response.writableFinished) gone.abort();
    });
    const sink: RunSink = {
      write: (line) => (response.destroyed ? true : response.write(`${JSON.stringify(line)}\n`)),
      drained: () =>
        new Promise((resolve) => {
          if (response.destroyed) return resolve();
          const settle = (): void => {
            response.off('drain', settle).off('close', settle);
            resolve();
          };
          response.on('drain', settle).on('close', settle);
        }),
      signal: gone.signal,
    };
    const renew = setInterval(handlers.contacted, runLeaseRenewMs);
    try {
      await handlers.run(parsed.data, sink);
    } finally {
      clearInterval(renew);
      response.end();
    }
  }

  // A previous agent killed in this sandbox leaves its socket file: listen() would fail with EADDRINUSE.
  await rm(socketPath, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}
