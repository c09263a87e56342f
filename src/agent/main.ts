import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { agentConfigSchema, type AgentHealth } from '../protocol/agent.js';
import { version } from '../protocol/version.js';
import { BrowserControl } from './browser-control.js';
import { desktopProcesses, display, proxyEnv, xSocket } from './desktop.js';
import { startEgressForwarder } from './egress-forwarder.js';
import { watchScreenLayout } from './layout.js';
import { serveAgent } from './agent-server.js';
import { describeNetworkError, Login } from './login.js';
import { Runner, runRequestProblem } from './run.js';
import { SupervisedProcess } from './supervised-process.js';

// The porthole agent: runs inside the sandbox as /usr/bin/node /opt/porthole/agent.mjs, starts
// and supervises the desktop, serves its health, and runs the provider login the server asks for;
// in a sandbox with no desktop (config.desktop false) it starts none and runs the CLI the server
// asks for instead (POST /run). Its stdout (one JSON line per event) is the driver's log of the
// sandbox; each child writes to <dir of agentSocket>/logs/<name>.log.

function log(event: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), event, ...fields })}\n`);
}

async function main(): Promise<void> {
  const configPath = process.env.PORTHOLE_AGENT_CONFIG;
  if (!configPath) throw new Error('PORTHOLE_AGENT_CONFIG is not set');
  const config = agentConfigSchema.parse(JSON.parse(await readFile(configPath, 'utf8')));
  const logsDir = join(dirname(config.agentSocket), 'logs');
  await mkdir(logsDir, { recursive: true });
  const home = process.env.HOME ?? '/home/porthole';
  const env = { ...process.env, DISPLAY: display, ...proxyEnv(config) };
  const browser = new BrowserControl();
  const processes = config.desktop ? desktopProcesses(config, home, browser).map((spec) => new SupervisedProcess(spec, { logsDir, env, onEvent: log })) : [];

  // No network but the sandbox's own loopback: 127.0.0.1:3128 leads to porthole's egress proxy.
  // Started before the desktop, so that Chromium's first request finds it.
  // The host's loopback services it may use (the demo issuer) are tunnelled to the same address.
  const forwarder = config.egress
    ? await startEgressForwarder({
        proxySocket: config.egress.proxySocket,
        tunnels: config.tunnels.map((t) => ({ port: t.port, host: t.host, targetPort: t.port })),
      })
    : null;
  const startedAt = Date.now();
  let lastContact = startedAt;
  const health = (): AgentHealth => {
    const states = processes.map((p) => p.state());
    // With no desktop there is nothing to wait for: serving is being healthy.
    const isHealthy = !config.desktop || (processes.every((p, i) => p.isRetired || states[i]!.running) && existsSync(config.vncSocket) && existsSync(xSocket));
    return { version, healthy: isHealthy, display, uptimeMs: Date.now() - startedAt, processes: states, login: login?.state() ?? null };
  };
  // The sign-in terminal takes the plain terminal's place: one terminal on the desktop, the CLI's.
  const replaceTerminal = () => processes.find((p) => p.spec.name === 'terminal')?.retire('replaced by the sign-in terminal') ?? Promise.resolve();
  // A login needs the desktop (its terminal, its browser); a run needs none (no X display in its env).
  const login = config.desktop ? new Login({ config, home, env, logsDir, log, replaceTerminal, browser }) : null;
  const runner = new Runner({ config, home, env: { ...process.env, ...proxyEnv(config) }, log });
  const server = await serveAgent(config.agentSocket, {
    health,
    isLoginStarted: () => login?.isStarted ?? false,
    login: (request) => {
      if (!login) return Promise.reject(new Error('this sandbox has no desktop to sign in on'));
      return login.start(request).catch((error: unknown) => {
        // The usual cause is the agent → server hop: say which and why, for the session's failure.
        throw new Error(`could not start the ${request.provider} login: ${describeNetworkError(error)} (server ${request.serverUrl})`, { cause: error });
      });
    },
    open: (url) => (login ? login.open(url) : Promise.reject(new Error('this sandbox has no browser'))),
    runRefusal: () => runner.refusal(),
    runProblem: runRequestProblem,
    run: (request, sink) => runner.run(request, sink),
    contacted: () => (lastContact = Date.now()),
  });
  log('agent.started', { version, sandboxId: config.sandboxId, pid: process.pid, desktop: config.desktop });
  for (const p of processes) void p.start();
  if (config.desktop) watchScreenLayout(env, log); // re-lays out the windows when the viewer resizes the screen

  let isStopping = false;
  const stop = (signal: NodeJS.Signals | 'lease'): void => {
    if (isStopping) return;
    isStopping = true;
    log('agent.stopping', { signal });
    server.close();
    void Promise.all([login?.stop(), runner.stop(), forwarder?.close(), ...processes.map((p) => p.stop())]).then(() => {
      log('agent.stopped');
      process.exit(0);
    });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // The lease: a server gone for good leaves no sandbox behind. The agent stopping its children and
  // exiting ends the sandbox (bwrap's init exits when no child is left); porthole's next start
  // removes what is left on disk.
  const leaseMs = config.leaseMs;
  if (leaseMs !== null) {
    setInterval(
      () => {
        if (Date.now() - lastContact <= leaseMs) return;
        log('agent.lease_expired', { leaseMs, silentMs: Date.now() - lastContact });
        stop('lease');
      },
      Math.min(1_000, leaseMs),
    ).unref();
  }
}

main().catch((error: unknown) => {
  log('agent.failed', { error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  process.exit(1);
});
