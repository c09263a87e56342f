import { createWriteStream } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient } from '../../src/cli/api-client.js';
import { isTerminal } from '../../src/protocol/session.js';
import { createLogger } from '../../src/server/logger.js';
import { startServer } from '../../src/server/main.js';
import { seedPglite } from './pglite-template.js';
import { sessionStateWaiter, testApiKey, testConfig, testOutputDir, type TestServer } from './server.js';

// A test server on a data directory the caller owns, so that a second server can start on the
// same one: how the restart fault test shows sessions, sandboxes and the ticket key surviving a
// server restart. Same settings as startTestServer (test/support/server.ts).

/**
 * A temp data directory as porthole's own: the sandbox uid must traverse it. It holds a copy of the
 * run's migrated PGlite (pglite-template.ts) unless `freshStore`. Remove it with removeTestDataDir.
 */
export async function createTestDataDir(options: { freshStore?: boolean } = {}): Promise<string> {
  const dataDir = await mkdtemp(join(tmpdir(), 'porthole-test-'));
  await chmod(dataDir, 0o711);
  if (!options.freshStore) await seedPglite(dataDir);
  return dataDir;
}

export async function removeTestDataDir(dataDir: string): Promise<void> {
  await rm(dataDir, { recursive: true, force: true });
}

export interface RestartableTestServer extends TestServer {
  /**
   * Closes the server as SIGTERM does: viewers get 4503, running sandboxes keep running for the
   * next server to adopt. Keeps the data directory.
   */
  close(): Promise<void>;
}

/**
 * A real porthole server on 127.0.0.1:0 over `dataDir`. Logs are appended to
 * test-output/<name>/server.log (one file across restarts). `stop()` ends every session, destroys
 * every sandbox, closes the server and removes the data directory; `close()` only closes.
 */
export async function startTestServerIn(dataDir: string, name: string, env: Record<string, string> = {}): Promise<RestartableTestServer> {
  const outDir = testOutputDir(name);
  await mkdir(outDir, { recursive: true });
  const logFile = join(outDir, 'server.log');
  const config = testConfig(dataDir, env);
  const logStream = createWriteStream(logFile, { flags: 'a' });
  const server = await startServer(config, { logger: createLogger(config.logLevel, logStream) }).catch(async (error: unknown) => {
    await new Promise<void>((resolve) => logStream.end(resolve));
    throw error;
  });
  const api = new ApiClient(server.url, testApiKey);

  const waitForState = sessionStateWaiter(api, logFile);
  const close = async () => {
    await server.close();
    await new Promise<void>((resolve) => (logStream.writableEnded ? resolve() : logStream.end(resolve)));
  };

  return {
    server,
    api,
    dataDir,
    logFile,
    waitForState,
    async readySession(body = {}) {
      const created = await api.createSession(body);
      const session = await waitForState(created.id, ['ready', 'authenticating', 'failed', 'ended']);
      if (session.state === 'failed' || session.state === 'ended')
        throw new Error(`session ${session.id} ${session.state}: ${session.detail}; log: ${logFile}`);
      return session;
    },
    close,
    async stop() {
      try {
        for (const session of await server.store.listSessions({ limit: 10_000 })) {
          if (!isTerminal(session.state)) await server.sessions.end(session.id, 'shutdown').catch(() => {});
        }
        for (const sandbox of await server.driver.list()) await server.driver.destroy(sandbox.id);
      } finally {
        await close();
        await removeTestDataDir(dataDir);
      }
    },
  };
}
