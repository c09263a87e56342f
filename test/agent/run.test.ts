import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { access, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { serveAgent } from '../../src/agent/agent-server.js';
import { Runner, runRequestProblem } from '../../src/agent/run.js';
import { startDemoOidc, type DemoOidc } from '../../src/demo/oidc/demo-oidc.js';
import type { Endpoint } from '../../src/drivers/driver.js';
import { fetchAgentHealth, runOnAgent } from '../../src/drivers/endpoint-probes.js';
import { agentConfigSchema, type AgentConfig, type AgentRunLine, type AgentRunRequest } from '../../src/protocol/agent.js';
import { AppError } from '../../src/protocol/errors.js';
import { defaultDemoAccount, demoClientId, formatDemoCredentials } from '../../src/providers/demo.js';
import { createLogger } from '../../src/server/logger.js';
import { demoSignIn } from '../support/demo-sign-in.js';
import { testOutputDir } from '../support/server.js';
import { until } from '../support/until.js';

// A run (POST /run) end to end against the built agent, started as a plain process on the host with
// `desktop: false` (so it starts no X server, window manager, terminal or browser: nothing of the
// host's is touched) and its socket in a temp directory; the client is the server's (runOnAgent).
// The CLI is the bundled demo CLI, with a credential from a real sign-in to the demo provider.
// The sandbox around it (bwrap, uids, the proxy) is the local driver's and tested there.

const dist = fileURLToPath(new URL('../../', import.meta.url));
const agentBundle = join(dist, 'agent/porthole-agent.mjs');
const demoCliBundle = join(dist, 'agent/porthole-demo-cli.mjs');

let root: string;
let oidc: DemoOidc;
let logStream: WriteStream;
/** Accepts connections and never answers: a sign-in service the demo CLI waits on until it is killed. */
let silent: Server;
let silentIssuer: string;
const silentSockets = new Set<Socket>();
const agents: ChildProcess[] = [];

before(async () => {
  await access(agentBundle).catch(() => assert.fail(`missing prerequisite ${agentBundle} (node scripts/build.mjs)`));
  await access('/usr/bin/node').catch(() => assert.fail('missing prerequisite /usr/bin/node (the demo CLI runs on it)'));
  const out = testOutputDir('agent-run');
  await mkdir(out, { recursive: true });
  root = await mkdtemp(join(tmpdir(), 'porthole-test-run-'));
  logStream = createWriteStream(join(out, 'demo-oidc.log'));
  oidc = await startDemoOidc({ port: 0, account: { ...defaultDemoAccount }, logger: createLogger('debug', logStream) });
  silent = createServer((socket) => {
    silentSockets.add(socket);
    socket.once('close', () => silentSockets.delete(socket));
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  silentIssuer = `http://127.0.0.1:${(silent.address() as { port: number }).port}`;
});

after(async () => {
  for (const agent of agents) if (agent.exitCode === null && agent.signalCode === null) agent.kill('SIGKILL');
  for (const socket of silentSockets) socket.destroy();
  await new Promise<void>((resolve) => (silent ? silent.close(() => resolve()) : resolve()));
  await oidc?.close();
  await new Promise<void>((resolve) => (logStream ? logStream.end(resolve) : resolve()));
  if (root) await rm(root, { recursive: true, force: true });
});

interface RunningAgent {
  readonly endpoint: Endpoint;
  readonly home: string;
  readonly process: ChildProcess;
  /** The agent's stdout (its JSON event lines). */
  readonly log: () => string;
}

/** The built agent with a desktop-less config, healthy. */
async function startAgent(name: string): Promise<RunningAgent> {
  const dir = join(root, name);
  const home = join(dir, 'home');
  await mkdir(home, { recursive: true });
  const config: AgentConfig = agentConfigSchema.parse({
    sandboxId: `test-${name}`,
    agentSocket: join(dir, 'agent.sock'),
    vncSocket: join(dir, 'vnc.sock'),
    width: 1280,
    height: 800,
    startUrl: 'about:blank',
    tools: { clis: join(dir, 'no-clis'), demoCli: demoCliBundle },
    desktop: false,
  });
  await writeFile(join(dir, 'config.json'), JSON.stringify(config));
  const child = spawn(process.execPath, [agentBundle], {
    env: { ...process.env, HOME: home, PORTHOLE_AGENT_CONFIG: join(dir, 'config.json') },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  agents.push(child);
  let log = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (log += chunk));
  const endpoint: Endpoint = { kind: 'unix', path: config.agentSocket };
  await until(
    `the agent ${name} serves its health`,
    () => fetchAgentHealth(endpoint),
    (health) => health.healthy,
    15_000,
    { canProbeFail: true, intervalMs: 50 },
  );
  return { endpoint, home, process: child, log: () => log };
}

async function stopAgent(agent: RunningAgent): Promise<void> {
  if (agent.process.exitCode !== null || agent.process.signalCode !== null) return;
  const exited = new Promise((resolve) => agent.process.once('exit', resolve));
  agent.process.kill('SIGTERM');
  await exited;
}

function runRequest(overrides: Partial<AgentRunRequest> & { credential: string }): AgentRunRequest {
  return {
    runId: 'run-1',
    provider: 'demo',
    args: ['whoami'],
    files: {},
    timeoutMs: 30_000,
    demo: { issuer: oidc.issuer, clientId: demoClientId },
    ...overrides,
  };
}

/** runOnAgent, keeping every line it was handed. */
async function run(agent: RunningAgent, request: AgentRunRequest, signal?: AbortSignal): Promise<{ lines: AgentRunLine[]; outcome: Promise<unknown> }> {
  const lines: AgentRunLine[] = [];
  const outcome = runOnAgent(agent.endpoint, request, { onLine: (line) => lines.push(line), ...(signal ? { signal } : {}) });
  outcome.catch(() => {}); // awaited by the caller
  return { lines, outcome };
}

function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
}

/** A credential file whose issuer never answers: the demo CLI waits on its discovery. */
function silentCredential(): string {
  return formatDemoCredentials({
    issuer: silentIssuer,
    client_id: demoClientId,
    access_token: 'not-a-real-access-token',
    refresh_token: 'not-a-real-refresh-token',
    id_token: 'not.a.jwt',
    token_type: 'Bearer',
    scope: 'openid',
    expires_at: new Date(Date.now() + 3_600_000).toISOString(),
    account: { sub: 'nobody', email: null },
  });
}

describe('a run in a sandbox with no desktop', () => {
  test('the agent is healthy with no processes and no display socket', async () => {
    const agent = await startAgent('health');
    try {
      const health = await fetchAgentHealth(agent.endpoint);
      assert.equal(health.healthy, true);
      assert.deepEqual(health.processes, []);
      assert.equal(health.login, null);
    } finally {
      await stopAgent(agent);
    }
  });

  test('the demo CLI runs with the stored credential: started, its output, then exit 0 with the file as it left it', async () => {
    const agent = await startAgent('whoami');
    try {
      const credential = formatDemoCredentials(await demoSignIn(oidc.issuer));
      const { lines, outcome } = await run(agent, runRequest({ credential, files: { 'notes/hello.txt': 'hello ✓' } }));
      const exit = (await outcome) as Extract<AgentRunLine, { type: 'exit' }>;

      assert.deepEqual(
        lines.map((l) => l.type),
        ['started', ...lines.slice(1, -1).map(() => 'output'), 'exit'],
      );
      const started = lines[0] as Extract<AgentRunLine, { type: 'started' }>;
      assert.deepEqual(started.argv, ['/usr/bin/node', demoCliBundle, 'run', 'whoami']);
      const stdout = lines.flatMap((l) => (l.type === 'output' && l.stream === 'stdout' ? [l.data] : [])).join('');
      assert.match(stdout, /signed in as demo@porthole\.test/);
      assert.deepEqual(exit, { type: 'exit', code: 0, signal: null, timedOut: false, credential });
      assert.deepEqual(lines.at(-1), exit);

      // The credential where the demo CLI's storage is pinned, readable by its owner only; the files in a fresh working directory.
      const file = await stat(join(agent.home, '.porthole/run/demo/credentials.json'));
      assert.equal(file.mode & 0o777, 0o600);
      const [workDir] = await readdir(join(agent.home, 'runs'));
      assert.equal(await readFile(join(agent.home, 'runs', workDir!, 'notes/hello.txt'), 'utf8'), 'hello ✓');

      // Logged: the run's id, pid and exit code; never the credential or the request.
      const log = agent.log();
      assert.match(log, /"event":"run\.started".*"runId":"run-1"/);
      assert.match(log, /"event":"run\.exited".*"code":0/);
      assert.ok(!log.includes(JSON.parse(credential).refresh_token), 'the refresh token is not in the log');
      assert.ok(!log.includes('hello ✓'), 'the files are not in the log');
    } finally {
      await stopAgent(agent);
    }
  });

  test('bad requests are 400 (paths out of the working directory), a run that cannot be prepared is an error line, and a second run is 409', async () => {
    const agent = await startAgent('refusals');
    try {
      const credential = silentCredential();
      for (const path of ['../escape.txt', '/etc/escape.txt', 'a/../../escape.txt', 'a/..']) {
        const { outcome } = await run(agent, runRequest({ credential, files: { [path]: 'x' } }));
        await assert.rejects(outcome, (error: AppError) => error.code === 'SANDBOX_UNREACHABLE' && /answered 400/.test(error.message), path);
      }
      assert.deepEqual(await readdir(agent.home), [], 'nothing was written for a refused request');
      await assert.rejects(runOnAgent(agent.endpoint, { ...runRequest({ credential }), timeoutMs: 10 }), (error: AppError) =>
        /answered 400: timeoutMs/.test(error.message),
      );

      // A file where a directory must go: refused once the run has begun, as an error line.
      const { lines, outcome } = await run(agent, runRequest({ credential, files: { a: 'file', 'a/b': 'under a file' } }));
      await assert.rejects(outcome, (error: AppError) => error.code === 'SANDBOX_UNREACHABLE' && /could not be prepared/.test(error.message));
      assert.deepEqual(
        lines.map((l) => l.type),
        ['error'],
      );
      assert.ok(!JSON.stringify(lines).includes('not-a-real-refresh-token'));

      await assert.rejects(runOnAgent(agent.endpoint, runRequest({ credential })), (error: AppError) =>
        /answered 409: this sandbox has had its run already/.test(error.message),
      );
    } finally {
      await stopAgent(agent);
    }
  });

  test('at timeoutMs the CLI is killed: exit with timedOut and the signal', async () => {
    const agent = await startAgent('timeout');
    try {
      const credential = silentCredential();
      const { lines, outcome } = await run(agent, runRequest({ credential, timeoutMs: 1_000, demo: { issuer: silentIssuer, clientId: demoClientId } }));
      const exit = (await outcome) as Extract<AgentRunLine, { type: 'exit' }>;
      assert.deepEqual(exit, { type: 'exit', code: null, signal: 'SIGTERM', timedOut: true, credential });
      const started = lines[0] as Extract<AgentRunLine, { type: 'started' }>;
      assert.equal(started.type, 'started');
      assert.ok(isGone(started.pid), `the CLI (pid ${started.pid}) is gone`);
    } finally {
      await stopAgent(agent);
    }
  });

  test('a client that goes away mid-run takes the run with it', async () => {
    const agent = await startAgent('disconnect');
    try {
      const abort = new AbortController();
      const { lines, outcome } = await run(
        agent,
        runRequest({ credential: silentCredential(), timeoutMs: 60_000, demo: { issuer: silentIssuer, clientId: demoClientId } }),
        abort.signal,
      );
      const started = await until(
        'the run has started',
        () => lines[0],
        (line) => line?.type === 'started',
        10_000,
        { intervalMs: 50 },
      );
      abort.abort();
      await assert.rejects(outcome, (error: AppError) => error instanceof AppError && error.code === 'SANDBOX_UNREACHABLE');
      const pid = (started as Extract<AgentRunLine, { type: 'started' }>).pid;
      await until(
        `the CLI (pid ${pid}) is killed`,
        () => isGone(pid),
        (gone) => gone,
        10_000,
        { intervalMs: 50 },
      );
      await until(
        'the agent logs the run’s end',
        () => agent.log(),
        (log) => /"event":"run\.exited".*"signal":"SIGTERM"/.test(log),
        10_000,
        { intervalMs: 50 },
      );
    } finally {
      await stopAgent(agent);
    }
  });
});

test('a sandbox with a desktop refuses runs with 409', async () => {
  // In-process: the built agent with a desktop would start Xvnc and Chromium on this host.
  const dir = join(root, 'desktop');
  await mkdir(join(dir, 'home'), { recursive: true });
  const config = agentConfigSchema.parse({
    sandboxId: 'test-desktop',
    agentSocket: join(dir, 'agent.sock'),
    vncSocket: join(dir, 'vnc.sock'),
    width: 1280,
    height: 800,
    startUrl: 'about:blank',
  });
  assert.equal(config.desktop, true, 'a desktop by default');
  const runner = new Runner({ config, home: join(dir, 'home'), env: {}, log: () => {} });
  const server = await serveAgent(config.agentSocket, {
    health: () => ({ version: 'test', healthy: true, display: ':0', uptimeMs: 0, processes: [], login: null }),
    login: () => Promise.reject(new Error('not here')),
    isLoginStarted: () => false,
    open: () => Promise.resolve(),
    runRefusal: () => runner.refusal(),
    runProblem: runRequestProblem,
    run: (request, sink) => runner.run(request, sink),
    contacted: () => {},
  });
  try {
    await assert.rejects(runOnAgent({ kind: 'unix', path: config.agentSocket }, runRequest({ credential: silentCredential() })), (error: AppError) =>
      /answered 409: this sandbox has a desktop/.test(error.message),
    );
    assert.deepEqual(await readdir(join(dir, 'home')), [], 'nothing was written');
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
});
