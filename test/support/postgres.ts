// A real, throwaway PostgreSQL server for tests, from Debian's `postgresql` package.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { chown, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { until } from './until.js';

const run = promisify(execFile);
const installHint = 'install the Debian package `postgresql` (apt-get install postgresql)';

export interface TestPostgres {
  /** postgres://postgres@127.0.0.1:<port>/porthole */
  readonly url: string;
  /** Creates another empty database on this server and returns its URL. */
  createDatabase(name: string): Promise<string>;
  /** Fast shutdown that keeps the data and the port, so that `start()` brings the same cluster back. */
  shutdown(): Promise<void>;
  /** Starts the cluster again after `shutdown()`, on the same port. */
  start(): Promise<void>;
  /** Shuts down if running and removes every file. Idempotent. */
  stop(): Promise<void>;
}

async function findBinDir(): Promise<string> {
  const root = '/usr/lib/postgresql';
  const versions = (await readdir(root).catch(() => [])).filter((name) => /^\d+$/.test(name)).sort((a, b) => Number(b) - Number(a));
  for (const version of versions) {
    const bin = join(root, version, 'bin');
    if (existsSync(join(bin, 'initdb')) && existsSync(join(bin, 'postgres'))) return bin;
  }
  throw new Error(`PostgreSQL server binaries not found in ${root}/*/bin: ${installHint}.`);
}

/** PostgreSQL refuses to run as root: then it runs as the `postgres` user the package creates. */
async function serverUser(): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  try {
    const [uid, gid] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])]);
    return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  } catch (error) {
    throw new Error(`No \`postgres\` user to run PostgreSQL as (this runs as root): ${installHint}.`, { cause: error });
  }
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function exited(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

export async function startPostgres(): Promise<TestPostgres> {
  const bin = await findBinDir();
  const user = await serverUser();
  const root = await mkdtemp(join(tmpdir(), 'porthole-test-pg-'));
  const data = join(root, 'data');
  const sockets = join(root, 'sockets');
  const port = await freePort();
  const baseUrl = `postgres://postgres@127.0.0.1:${port}`;
  let server: ChildProcess | undefined;
  let log = '';

  // Last resort if the test process exits without calling stop(): an immediate shutdown, so no
  // postmaster outlives it.
  const onExit = () => {
    server?.kill('SIGQUIT');
    rmSync(root, { recursive: true, force: true });
  };
  process.on('exit', onExit);

  const admin = async <T>(fn: (client: pg.Client) => Promise<T>): Promise<T> => {
    const client = new pg.Client({ connectionString: `${baseUrl}/postgres`, connectionTimeoutMillis: 1_000 });
    client.on('error', () => {}); // reported by the pending call
    try {
      await client.connect();
      return await fn(client);
    } finally {
      await client.end().catch(() => {});
    }
  };

  const start = async () => {
    if (server) throw new Error('PostgreSQL is already running.');
    log = '';
    const child = spawn(
      join(bin, 'postgres'),
      ['-D', data, '-h', '127.0.0.1', '-p', String(port), '-k', sockets, '-c', 'fsync=off', '-c', 'full_page_writes=off'],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], ...user },
    );
    server = child;
    const keep = (chunk: Buffer) => {
      log = (log + chunk.toString()).slice(-8_000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    child.once('exit', () => {
      if (server === child) server = undefined;
    });

    const state = await until(
      `PostgreSQL accepting connections on port ${port}`,
      async () =>
        server === child
          ? admin((client) => client.query('SELECT 1')).then(
              () => 'up',
              (error: Error) => `not yet: ${error.message}`,
            )
          : 'exited',
      (seen) => seen === 'up' || seen === 'exited',
      30_000,
      { intervalMs: 100 },
    ).catch((error: Error) => {
      throw new Error(`${error.message}; its log:\n${log}`, { cause: error });
    });
    if (state === 'exited') throw new Error(`PostgreSQL exited while starting (port ${port}):\n${log}`);
  };

  const shutdown = async () => {
    const child = server;
    if (!child) return;
    child.kill('SIGINT'); // fast shutdown: ends sessions, then a clean checkpoint
    if (!(await exited(child, 10_000))) {
      child.kill('SIGQUIT');
      await exited(child, 5_000);
    }
    server = undefined;
  };

  const stop = async () => {
    await shutdown();
    process.off('exit', onExit);
    await rm(root, { recursive: true, force: true });
  };

  const createDatabase = async (name: string) => {
    if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`Not a plain database name: ${name}`);
    await admin((client) => client.query(`CREATE DATABASE ${name}`));
    return `${baseUrl}/${name}`;
  };

  try {
    await mkdir(sockets);
    if (user) {
      await chown(root, user.uid, user.gid);
      await chown(sockets, user.uid, user.gid);
    }
    await run(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions'], {
      cwd: root,
      ...user,
    }).catch((error: { stderr?: string }) => {
      throw new Error(`initdb failed: ${error.stderr ?? ''}`, { cause: error });
    });
    await start();
    const url = await createDatabase('porthole');
    return { url, createDatabase, shutdown, start, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
