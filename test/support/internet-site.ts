import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { until } from './until.js';

// A stand-in for a host on the internet: a network namespace `porthole-test-<kind>-<random>` with a
// veth pair (host side 203.0.113.1/24, namespace side 203.0.113.2/24, TEST-NET-3: no such host
// exists anywhere) and a node HTTP server on 203.0.113.2:8080 inside. Traffic to it never leaves
// this machine. The veth names cannot carry `porthole-test-` (15 characters at most), but the pair
// is made inside the namespace's lifetime and goes with it; its host side is deleted too, to be sure.

export interface InternetSite {
  readonly namespace: string;
  readonly address: string;
  readonly port: number;
  close(): Promise<void>;
}

const ip = (...args: string[]) => promisify(execFile)('ip', args);

/**
 * Starts the site. `script` is the node program run inside (it must listen on 203.0.113.2:8080 and
 * print "listening"); `args` follow it on its command line.
 */
export async function startInternetSite(kind: string, script: string, args: readonly string[] = []): Promise<InternetSite> {
  const id = randomBytes(3).toString('hex');
  const namespace = `porthole-test-${kind}-${id}`;
  const hostSide = `ph${id}h`;
  const inside = `ph${id}n`;
  let server: ChildProcess | null = null;
  const close = async () => {
    if (server && server.exitCode === null && server.signalCode === null) {
      const exited = new Promise((resolve) => server!.once('exit', resolve));
      server.kill('SIGKILL');
      await exited;
    }
    await ip('netns', 'del', namespace).catch(() => {});
    await ip('link', 'del', hostSide).catch(() => {});
  };
  try {
    await ip('netns', 'add', namespace);
    await ip('link', 'add', hostSide, 'type', 'veth', 'peer', 'name', inside, 'netns', namespace);
    await ip('addr', 'add', '203.0.113.1/24', 'dev', hostSide);
    await ip('link', 'set', hostSide, 'up');
    await ip('-n', namespace, 'addr', 'add', '203.0.113.2/24', 'dev', inside);
    await ip('-n', namespace, 'link', 'set', inside, 'up');
    await ip('-n', namespace, 'link', 'set', 'lo', 'up');
    server = spawn('ip', ['netns', 'exec', namespace, process.execPath, '-e', script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    const started = server;
    let out = '';
    started.stdout!.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    await until(
      'the internet site listens',
      () => ({ out, exit: started.exitCode }),
      (s) => s.out.includes('listening') || s.exit !== null,
      10_000,
      { intervalMs: 20 },
    );
    if (!out.includes('listening')) throw new Error(`the internet site exited (${started.exitCode}) before listening`);
    return { namespace, address: '203.0.113.2', port: 8080, close };
  } catch (error) {
    await close();
    throw error;
  }
}
