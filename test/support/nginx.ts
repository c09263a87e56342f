// A throwaway nginx (Debian's package) in front of test servers: its own prefix and config in a
// temp directory, loopback ports only, stopped and removed by stop(). The proxy configuration is
// read from docs/reverse-proxy.md, so the test runs what the documentation tells people to run.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { until } from './until.js';

const installHint = 'install the Debian package `nginx` (sh scripts/setup.sh --test)';
const docPath = fileURLToPath(new URL('../../../docs/reverse-proxy.md', import.meta.url));
/** The upstream the documented config names; replaced by each test server's address. */
const documentedUpstream = 'proxy_pass http://127.0.0.1:8480;';

export interface TestNginx {
  readonly prefix: string;
  /** nginx's error log so far (upstream timeouts show here). */
  errorLog(): Promise<string>;
  /** Fast shutdown, then the prefix directory is removed. Idempotent. */
  stop(): Promise<void>;
}

export interface ProxiedServer {
  /** The loopback port nginx listens on for this server. */
  listenPort: number;
  /** porthole's own port on 127.0.0.1. */
  upstreamPort: number;
}

/** A port nothing listens on right now (the usual small race until it is bound). */
export async function freeLoopbackPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The text of the `{ … }` block that starts at the first `{` after `from`. */
function blockAt(text: string, from: number): string {
  const open = text.indexOf('{', from);
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    if (text[i] === '{') depth++;
    else if (text[i] === '}' && --depth === 0) return text.slice(from, i + 1);
  }
  throw new Error('unbalanced braces');
}

/** The documented `map` block and the `location` blocks of its server, verbatim. */
export async function documentedProxyBlocks(): Promise<{ map: string; locations: string[] }> {
  const doc = await readFile(docPath, 'utf8');
  const fence = /```nginx\n([\s\S]*?)```/.exec(doc);
  if (!fence?.[1]) throw new Error(`${docPath}: no \`\`\`nginx block`);
  const config = fence[1];
  const mapAt = config.indexOf('map $http_upgrade');
  if (mapAt < 0) throw new Error(`${docPath}: the nginx block has no "map $http_upgrade"`);
  const locations: string[] = [];
  for (let at = config.indexOf('location'); at >= 0; at = config.indexOf('location', at + 1)) {
    const block = blockAt(config, at);
    locations.push(block);
    at += block.length - 1;
  }
  if (!locations.some((l) => l.includes(documentedUpstream))) throw new Error(`${docPath}: no location with "${documentedUpstream}"`);
  return { map: blockAt(config, mapAt), locations };
}

async function isListening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
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

/**
 * nginx with the documented proxy blocks, one `server` per porthole server, each on its own
 * loopback port. Nothing else of nginx's defaults is changed, except `proxyReadTimeoutS` when given
 * (nginx's default is 60 s): set at the `http` level, as a shorter default, which the documented
 * blocks inherit since they do not set it.
 */
export async function startNginx(servers: readonly ProxiedServer[], options: { proxyReadTimeoutS?: number } = {}): Promise<TestNginx> {
  const { map, locations } = await documentedProxyBlocks();
  const prefix = await mkdtemp(join(tmpdir(), 'porthole-test-nginx-'));
  // Workers run as nobody when nginx starts as root; they must reach their temp directories here.
  await chmod(prefix, 0o711);
  const isRoot = process.getuid?.() === 0;
  const serverBlocks = servers.map(
    ({ listenPort, upstreamPort }) => `
  server {
    listen 127.0.0.1:${listenPort};
    server_name localhost;
    ${locations.map((l) => l.replace(documentedUpstream, `proxy_pass http://127.0.0.1:${upstreamPort};`)).join('\n    ')}
  }`,
  );
  const config = `# written by test/support/nginx.ts
daemon off;
master_process on;
worker_processes 1;
${isRoot ? 'user nobody nogroup;' : ''}
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log info;
events { worker_connections 256; }
http {
  access_log ${prefix}/access.log;
  client_body_temp_path ${prefix}/client_body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  ${options.proxyReadTimeoutS === undefined ? '' : `proxy_read_timeout ${options.proxyReadTimeoutS}s;`}
  ${map}
${serverBlocks.join('\n')}
}
`;
  const configPath = join(prefix, 'nginx.conf');
  await writeFile(configPath, config);

  let output = '';
  const child = spawn('nginx', ['-p', `${prefix}/`, '-c', configPath, '-e', join(prefix, 'error.log')], { stdio: ['ignore', 'pipe', 'pipe'] });
  const keep = (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4_000));
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let spawnError: Error | null = null;
  child.once('error', (error) => (spawnError = error));
  // Last resort when the test process ends without stop(): no nginx outlives it.
  const onExit = () => {
    child.kill('SIGTERM');
    rmSync(prefix, { recursive: true, force: true });
  };
  process.on('exit', onExit);

  let isStopped = false;
  const stop = async () => {
    if (isStopped) return;
    isStopped = true;
    child.kill('SIGTERM'); // fast shutdown: master and workers exit
    if (!(await exited(child, 5_000))) {
      child.kill('SIGKILL');
      await exited(child, 2_000);
    }
    process.off('exit', onExit);
    await rm(prefix, { recursive: true, force: true });
  };
  const errorLog = () => readFile(join(prefix, 'error.log'), 'utf8').catch(() => '');

  const state = await until(
    `nginx listening on ${servers.map((s) => `127.0.0.1:${s.listenPort}`).join(', ')}`,
    async () => {
      if (spawnError || child.exitCode !== null) return 'exited';
      return (await Promise.all(servers.map((s) => isListening(s.listenPort)))).every(Boolean) ? 'listening' : 'not yet';
    },
    (seen) => seen !== 'not yet',
    10_000,
    { intervalMs: 50 },
  ).catch(async (error: Error) => {
    const log = await errorLog();
    await stop();
    throw new Error(`${error.message}:\n${output}\n${log}`, { cause: error });
  });
  if (state === 'exited') {
    const log = await errorLog();
    await stop();
    const missing = (spawnError as NodeJS.ErrnoException | null)?.code === 'ENOENT';
    throw new Error(missing ? `nginx not found: ${installHint}` : `nginx exited while starting:\n${output}\n${log}`);
  }
  return { prefix, errorLog, stop };
}
