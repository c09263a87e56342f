import { createWriteStream } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient } from '../../src/cli/api-client.js';
import { isTerminal, type Session } from '../../src/protocol/session.js';
import { loadConfig, type Config } from '../../src/server/config.js';
import { createLogger } from '../../src/server/logger.js';
import { startServer, type RunningServer, type StartOptions } from '../../src/server/main.js';
import { seedPglite } from './pglite-template.js';
import { testSandboxUids } from './sandbox-uids.js';
import { until } from './until.js';

export const testApiKey = 'test-api-key-0123456789abcdef';
/** The test servers' sandbox uids (scripts/test.mjs's leak check looks for processes of this range). */
export { testSandboxUids } from './sandbox-uids.js';

export function testOutputDir(name: string): string {
  return join(process.env.PORTHOLE_TEST_OUTPUT ?? join(tmpdir(), 'porthole-test-output'), name);
}

export interface TestServer {
  server: RunningServer;
  api: ApiClient;
  dataDir: string;
  logFile: string;
  /** Creates a session and waits until it leaves `starting`. */
  readySession(body?: { provider?: string; userId?: string }): Promise<Session>;
  waitForState(id: string, states: Session['state'][], timeoutMs?: number): Promise<Session>;
  stop(): Promise<void>;
}

/** waitForState for a test server: polls the session until it is in one of `states`, or fails naming the log. */
export function sessionStateWaiter(api: ApiClient, logFile: string): TestServer['waitForState'] {
  return (id, states, timeoutMs = 60_000) =>
    until(
      `session ${id} in ${states.join('|')} (log: ${logFile})`,
      () => api.getSession(id),
      (session) => states.includes(session.state),
      timeoutMs,
      { intervalMs: 100 },
    );
}

/** The configuration every test server runs with, over `dataDir`; `env` adds or overrides. */
export function testConfig(dataDir: string, env: Record<string, string> = {}): Config {
  return loadConfig({ ...testEnv(dataDir), ...env });
}

/** The environment of a test server over `dataDir` (also for one started as a process of its own). */
export function testEnv(dataDir: string): Record<string, string> {
  return {
    PORTHOLE_HOST: '127.0.0.1',
    PORTHOLE_PORT: '0',
    PORTHOLE_DATA_DIR: dataDir,
    PORTHOLE_API_KEY: testApiKey,
    PORTHOLE_SANDBOX_UIDS: testSandboxUids,
    PORTHOLE_LOG_LEVEL: 'debug',
    // Tests send no traffic beyond loopback: a CLI's sign-in URL on the internet is not fetched.
    PORTHOLE_SANDBOX_LOOPBACK_ONLY: 'true',
    // No desktops started ahead unless a test asks (test/server/warm-pool.test.ts): each would be one more sandbox on a 2-core machine.
    PORTHOLE_WARM_POOL: '0',
    // Only the demo provider's grants are refreshed: the real ones' token endpoints are on the internet.
    PORTHOLE_REFRESH_PROVIDERS: 'demo',
  };
}

/**
 * A real porthole server on 127.0.0.1:0 with a temp data dir, PGlite (or DATABASE_URL when given),
 * the local driver and a fixed API key. Logs go to test-output/<name>/server.log. `stop()` ends every
 * session (destroying its sandbox), closes the server and removes the data dir.
 */
export async function startTestServer(
  name: string,
  env: Record<string, string> = {},
  options: Pick<StartOptions, 'agentBundle' | 'wrapDriver'> & { freshStore?: boolean } = {},
): Promise<TestServer> {
  const dataDir = await mkdtemp(join(tmpdir(), 'porthole-test-'));
  await chmod(dataDir, 0o711); // as porthole's own data dir: the sandbox uid must traverse it
  // A copy of the run's migrated PGlite (pglite-template.ts), unless the store is PostgreSQL or the test is of a first start.
  const { freshStore, ...startOptions } = options;
  if (!env.DATABASE_URL && !freshStore) await seedPglite(dataDir);
  const outDir = testOutputDir(name);
  await mkdir(outDir, { recursive: true });
  const logFile = join(outDir, 'server.log');
  const config = testConfig(dataDir, env);
  const logStream = createWriteStream(logFile, { flags: 'a' });
  const logger = createLogger(config.logLevel, logStream);
  let server: RunningServer;
  try {
    server = await startServer(config, { logger, ...startOptions });
  } catch (error) {
    await rm(dataDir, { recursive: true, force: true });
    throw error;
  }
  const api = new ApiClient(server.url, testApiKey);

  const waitForState = sessionStateWaiter(api, logFile);

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
    async stop() {
      try {
        // Nothing starts from here on (no boot, no refill of the warm pool); then everything goes.
        await server.sessions.close();
        const live = await server.store.listSessions({ limit: 10_000 });
        for (const session of live) {
          if (!isTerminal(session.state)) await server.sessions.end(session.id, 'shutdown').catch(() => {});
        }
        for (const sandbox of await server.driver.list()) await server.driver.destroy(sandbox.id);
      } finally {
        await server.close();
        await new Promise<void>((resolve) => logStream.end(resolve));
        await rm(dataDir, { recursive: true, force: true });
      }
    },
  };
}
