import { createServer, type Server } from 'node:http';
import { rm } from 'node:fs/promises';
import type { AgentHealth } from '../protocol/agent.js';

// GET /health on a unix socket: the only thing the agent serves for now.

export async function serveHealth(socketPath: string, health: () => AgentHealth): Promise<Server> {
  const server = createServer((request, response) => {
    if (request.method === 'GET' && request.url === '/health') {
      const body = JSON.stringify(health());
      response.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      response.end(body);
      return;
    }
    response.writeHead(404, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ error: 'not found' }));
  });
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
