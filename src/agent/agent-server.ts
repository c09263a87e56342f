import { rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { agentLoginRequest, type AgentHealth, type AgentLoginRequest } from '../protocol/agent.js';

// What the agent serves on its unix socket (reachable by the server through the sandbox's run
// directory, and by the sandbox's own processes):
//   GET  /health  its version, the desktop's processes and the login's phase
//   POST /login   the server starts the provider login, handing over the sandbox's token (once)
//   POST /open    the browser wrappers (xdg-open & co.) ask for a URL in the sandbox's Chromium

export interface AgentHandlers {
  health(): AgentHealth;
  /** Resolves once the login runs; rejects with the reason it could not start. */
  login(request: AgentLoginRequest): Promise<void>;
  isLoginStarted(): boolean;
  open(url: URL): Promise<void>;
  /** Every request renews the sandbox's lease (the server asks /health on each reconcile tick). */
  contacted(): void;
}

const maxBodyBytes = 16 * 1024;

function send(response: ServerResponse, status: number, body?: unknown): void {
  if (body === undefined) {
    response.writeHead(status).end();
    return;
  }
  const text = JSON.stringify(body);
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  response.end(text);
}

async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBodyBytes) throw new Error(`body larger than ${maxBodyBytes} bytes`);
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
    send(response, 404, { error: 'not found' });
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
