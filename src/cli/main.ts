#!/usr/bin/env node
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { SessionDiagnosis } from '../protocol/diagnosis.js';
import { AppError, isErrorCode } from '../protocol/errors.js';
import { type startSteps, startStepLabels, startStepNote, type Session, type SessionEvent } from '../protocol/session.js';
import { liveStates, providerNames } from '../protocol/session-states.js';
import { version } from '../protocol/version.js';
import { ConfigError, configVariables, loadConfig, type Role } from '../server/config.js';
import type { RunningServer } from '../server/main.js';
import type { NodeView } from '../protocol/nodes.js';
import { loginLinkTtlMs } from '../protocol/apps.js';
import { createTicketSigner } from '../server/tickets.js';
import { ApiClient } from './api-client.js';
import { installCredential, refresherWarning, withoutRefreshToken } from './credentials.js';
import { formatDiagnosis } from './diagnosis-format.js';
import { doctorCommand } from './doctor.js';

// `porthole <noun> <verb>`. Exit codes: 0 done, 1 the operation failed (the error code is printed),
// 2 the command line was wrong.

const usage = `porthole ${version}

Usage:
  porthole start                         start the server (configuration: PORTHOLE_* variables, see docs/config.md)
  porthole server                        more than one host: a stateless API, dashboard and edge relay
  porthole node                          more than one host: this host's sandboxes (one per host); SIGTERM drains it
                                         (both need DATABASE_URL, PORTHOLE_CLUSTER_KEY, PORTHOLE_MASTER_KEY: docs/deploy.md)
  porthole nodes list [--json]           the hosts: state, generation, load against capacity, last heartbeat
  porthole nodes drain <node-id>         it takes no new sessions; its live ones finish
  porthole nodes undrain <node-id>
  porthole sessions list [--user ID] [--state STATE] [--json]
  porthole sessions create [--provider NAME] [--user ID] [--no-wait] [--json]
  porthole sessions end <session-id>
  porthole sessions events <session-id> [--json]
  porthole sessions diagnose <session-id> [--json]   walk the hops to its desktop; exit 1 when one failed
  porthole doctor [--json]               check this host: packages, namespaces, runsc, data directory, store, port
  porthole credentials get <session-id>  print the captured credential file to stdout (the read is audited)
  porthole credentials install <session-id> [--force] [--access-only]
                                         write it where the provider's CLI expects it here (mode 0600);
                                         --access-only: without the refresh token porthole keeps fresh
  porthole credentials token <session-id> [--json]
                                         a fresh access token alone (porthole refreshes it first if due)
  porthole run <provider> [--session ID] [--user ID] [--timeout SECONDS] -- <args…>
                                         run the provider's CLI with a stored credential in a sandbox
                                         (claude -p, codex exec, gemini -p, demo run), its output streamed;
                                         the credential: --session's, else the newest active one (of --user)
  porthole keys create NAME [--admin] [--webhook-url URL] [--json]
                                         a new API key: an app key sees only the sessions it creates
  porthole keys list [--json]            every key (never the key itself), revoked ones included
  porthole keys revoke <key-id>          the key authenticates nothing from now on
  porthole keys rotate                   re-encrypt stored credentials under a new master key
  porthole webhooks deliveries [--session ID] [--json]
                                         the webhook delivery log: state, attempts, last answer
  porthole login-link                    a new one-time dashboard login link (10 minutes): with an admin
                                         PORTHOLE_API_KEY, or without one from the data directory
                                         (PORTHOLE_DATA_DIR, default ./.porthole) on the server's host

The other commands talk to PORTHOLE_URL (default http://127.0.0.1:8480) with PORTHOLE_API_KEY.`;

class UsageError extends Error {}

const print = (line = ''): void => {
  process.stdout.write(`${line}\n`);
};
const short = (iso: string) => iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');

function describeEvent(event: SessionEvent): string {
  const details = event.details as Record<string, unknown>;
  if (event.type.startsWith('step.')) {
    const step = String(details.step);
    const label = startStepLabels[step as (typeof startSteps)[number]] ?? step;
    if (event.type === 'step.succeeded') {
      const note = startStepNote(step, details);
      return `${label}: done in ${details.ms} ms${note ? ` (${note})` : ''}`;
    }
    if (event.type === 'step.failed') return `${label}: FAILED ${details.error ?? ''} ${details.cause ?? ''}`.trim();
    return `${label}…`;
  }
  if (event.from || event.to) return `${event.from ?? '-'} → ${event.to ?? '-'}${event.reason ? ` (${event.reason})` : ''}`;
  return `${event.type}${event.reason ? ` (${event.reason})` : ''}`;
}

async function sessionsCommand(verb: string | undefined, args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      json: { type: 'boolean' },
      provider: { type: 'string' },
      user: { type: 'string' },
      state: { type: 'string' },
      'no-wait': { type: 'boolean' },
    },
  });
  const api = ApiClient.fromEnv(process.env);
  const idArg = () => {
    const id = positionals[0];
    if (!id) throw new UsageError(`porthole sessions ${verb} needs a session id`);
    return id;
  };
  switch (verb) {
    case 'list': {
      const { sessions } = await api.listSessions({ userId: values.user, state: values.state });
      if (values.json) return print(JSON.stringify(sessions, null, 2));
      if (sessions.length === 0) return print('no sessions');
      print(['ID'.padEnd(24), 'STATE'.padEnd(15), 'PROVIDER'.padEnd(12), 'CREATED'.padEnd(21), 'REASON'].join(' '));
      for (const s of sessions) {
        print([s.id.padEnd(24), s.state.padEnd(15), (s.provider ?? '-').padEnd(12), short(s.createdAt).padEnd(21), s.reason ?? ''].join(' '));
      }
      return;
    }
    case 'create': {
      const body: Record<string, string> = {};
      if (values.provider) body.provider = values.provider;
      if (values.user) body.userId = values.user;
      let session: Session = await api.createSession(body);
      if (!values.json) print(`session ${session.id} starting`);
      if (!values['no-wait']) session = await followStart(api, session, !values.json);
      const ticket = session.state === 'ready' || session.state === 'authenticating' ? await api.createTicket(session.id) : null;
      if (values.json) return print(JSON.stringify({ session, viewerUrl: ticket?.viewerUrl ?? null }, null, 2));
      if (session.state === 'failed')
        throw new AppError(isErrorCode(session.reason) ? session.reason : 'SANDBOX_START_FAILED', { message: session.detail ?? 'failed' });
      if (ticket) print(`ready. Open the viewer (link valid until ${short(ticket.expiresAt)}):\n  ${ticket.viewerUrl}`);
      return;
    }
    case 'end': {
      const session = await api.endSession(idArg());
      return print(`session ${session.id} ${session.state}${session.reason ? ` (${session.reason})` : ''}`);
    }
    case 'events': {
      const { events } = await api.listEvents(idArg());
      if (values.json) return print(JSON.stringify(events, null, 2));
      for (const e of events) print(`${short(e.at)}  ${e.type.padEnd(20)} ${describeEvent(e)}`);
      return;
    }
    case 'diagnose': {
      const diagnosis = await api.request<SessionDiagnosis>('GET', `/v1/sessions/${encodeURIComponent(idArg())}/diagnosis`);
      print(values.json ? JSON.stringify(diagnosis, null, 2) : formatDiagnosis(diagnosis).join('\n'));
      const failure = diagnosis.firstFailure;
      if (failure) throw new AppError(failure.code, { message: `the ${failure.hop} hop failed: ${failure.cause}` });
      return;
    }
    default:
      throw new UsageError(`unknown command: porthole sessions ${verb ?? ''}`.trim());
  }
}

async function credentialsCommand(verb: string | undefined, args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { force: { type: 'boolean' }, 'access-only': { type: 'boolean' }, json: { type: 'boolean' } },
  });
  if (verb !== 'get' && verb !== 'install' && verb !== 'token') throw new UsageError(`unknown command: porthole credentials ${verb ?? ''}`.trim());
  const id = positionals[0];
  if (!id) throw new UsageError(`porthole credentials ${verb} needs a session id`);
  const api = ApiClient.fromEnv(process.env);
  if (verb === 'token') {
    const token = await api.getAccessToken(id);
    if (values.json) return print(JSON.stringify(token, null, 2));
    // The token alone on stdout (for $(…)); when it expires on stderr.
    process.stdout.write(`${token.accessToken}\n`);
    if (token.expiresAt) process.stderr.write(`expires ${token.expiresAt}\n`);
    return;
  }
  const isAccessOnly = values['access-only'] === true;
  // A hand-out refreshes first when due: the access token installed is the freshest porthole has.
  const fresh = isAccessOnly ? await api.getAccessToken(id) : null;
  const credential = await api.getCredentials(id);
  // Exactly the file, nothing added: `porthole credentials get … > file` must reproduce it.
  if (verb === 'get') return void process.stdout.write(credential.file);
  const installed = isAccessOnly ? { ...credential, file: withoutRefreshToken(credential.file) } : credential;
  const path = await installCredential(installed, { force: values.force === true, env: process.env });
  const who = credential.account ? ` for ${credential.account}` : '';
  if (isAccessOnly) {
    print(`wrote the ${credential.provider} access token${who} to ${path} (mode 0600), without the refresh token`);
    print(`it works until ${fresh?.expiresAt ?? 'the provider ends it'}; run this again for a fresh one`);
    return;
  }
  print(`wrote ${credential.provider} credentials${who} to ${path} (mode 0600)`);
  process.stderr.write(refresherWarning);
}

async function keysCommand(verb: string | undefined, args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { name: { type: 'string' }, admin: { type: 'boolean' }, 'webhook-url': { type: 'string' }, json: { type: 'boolean' } },
  });
  const api = ApiClient.fromEnv(process.env);
  switch (verb) {
    case 'create': {
      const name = values.name ?? positionals[0];
      if (!name) throw new UsageError('porthole keys create needs a name (--name NAME)');
      const created = await api.createKey({ name, admin: values.admin === true, webhookUrl: values['webhook-url'] });
      if (values.json) return print(JSON.stringify(created, null, 2));
      print(`${created.admin ? 'admin' : 'app'} key ${created.id} (${created.name}); shown this once, porthole keeps only its hash:`);
      print(`  ${created.key}`);
      if (created.webhookSecret)
        print(`webhooks to ${created.webhookUrl}, signed with (shown this once):
  ${created.webhookSecret}`);
      return;
    }
    case 'list': {
      const { keys } = await api.listKeys();
      if (values.json) return print(JSON.stringify(keys, null, 2));
      print(['ID'.padEnd(17), 'NAME'.padEnd(20), 'KIND'.padEnd(6), 'CREATED'.padEnd(21), 'REVOKED'.padEnd(21), 'WEBHOOK'].join(' '));
      for (const k of keys) {
        print(
          [
            k.id.padEnd(17),
            k.name.slice(0, 20).padEnd(20),
            (k.admin ? 'admin' : 'app').padEnd(6),
            short(k.createdAt).padEnd(21),
            (k.revokedAt ? short(k.revokedAt) : '-').padEnd(21),
            k.webhookUrl ?? '-',
          ].join(' '),
        );
      }
      return;
    }
    case 'revoke': {
      const id = positionals[0];
      if (!id) throw new UsageError('porthole keys revoke needs a key id');
      const revoked = await api.revokeKey(id);
      return print(`key ${revoked.id} (${revoked.name}) revoked at ${short(revoked.revokedAt ?? '')}`);
    }
    case 'rotate': {
      // Through the running server: PGlite is single-process, so the CLI cannot open the store itself.
      const { keyId, reencrypted } = await api.rotateKeys();
      return print(`master key is now ${keyId}; ${reencrypted} stored credential${reencrypted === 1 ? '' : 's'} re-encrypted`);
    }
    default:
      throw new UsageError(`unknown command: porthole keys ${verb ?? ''}`.trim());
  }
}

async function webhooksCommand(verb: string | undefined, args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { session: { type: 'string' }, json: { type: 'boolean' } } });
  if (verb !== 'deliveries') throw new UsageError(`unknown command: porthole webhooks ${verb ?? ''}`.trim());
  const { deliveries } = await ApiClient.fromEnv(process.env).listDeliveries(values.session);
  if (values.json) return print(JSON.stringify(deliveries, null, 2));
  if (deliveries.length === 0) return print('no webhook deliveries');
  for (const d of deliveries) {
    const outcome = d.state === 'pending' ? `next attempt ${short(d.nextAttemptAt ?? '')}` : d.state;
    print(
      `${short(d.createdAt)}  ${d.type.padEnd(18)} ${d.sessionId}  ${outcome}; ${d.attempts} attempt(s)${d.lastError ? `: ${d.lastError}` : ''}  → ${d.url}`,
    );
  }
}

/** A one-time dashboard login link: asked of the server with an admin key, or signed here with the data directory's signing key. */
async function loginLinkCommand(): Promise<void> {
  const api = ApiClient.fromEnv(process.env);
  if (api.apiKey) {
    const { url, expiresAt } = await api.createLoginLink();
    return print(`Open this one-time login link (valid until ${short(expiresAt)}):\n  ${url}`);
  }
  const dataDir = resolve(process.env.PORTHOLE_DATA_DIR ?? '.porthole');
  const key = await readFile(join(dataDir, 'signing.key')).catch((error: NodeJS.ErrnoException) => {
    throw new AppError('UNAUTHENTICATED', {
      message: `set an admin PORTHOLE_API_KEY, or run this where porthole's data directory is readable (${dataDir}/signing.key: ${error.code ?? error.message})`,
    });
  });
  const { token, expiresAt } = createTicketSigner(key, 60_000).issueLoginLink(loginLinkTtlMs);
  const base = (process.env.PORTHOLE_PUBLIC_URL ?? api.baseUrl).replace(/\/+$/, '');
  print(`Open this one-time login link (valid until ${short(expiresAt.toISOString())}):\n  ${base}/login?token=${encodeURIComponent(token)}`);
}

/** Prints each start-up step as it happens, until the session leaves `starting`. */
async function followStart(api: ApiClient, created: Session, show: boolean): Promise<Session> {
  let after = 0;
  const printNewSteps = async () => {
    const { events } = await api.listEvents(created.id, after);
    for (const event of events) {
      after = Math.max(after, event.seq);
      if (show && event.type.startsWith('step.')) print(`  ${describeEvent(event)}`);
    }
  };
  for (;;) {
    await printNewSteps();
    const session = await api.getSession(created.id);
    if (session.state !== 'starting') {
      // The last step's event may have landed between the two reads: print it before the outcome.
      await printNewSteps();
      if (show && session.state === 'failed') print(`  failed: ${session.detail ?? session.reason}`);
      return session;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function startCommand(args: string[], role: Role = 'all-in-one'): Promise<void> {
  const command = role === 'all-in-one' ? 'start' : role;
  if (args.includes('--help')) {
    print(`porthole ${command}: runs the ${role === 'all-in-one' ? 'server' : role}.\nConfiguration variables: ${configVariables.join(', ')}`);
    return;
  }
  const { startServer } = await import('../server/main.js');
  const config = loadConfig(process.env, role);
  const server = await startServer(config);
  if (role !== 'all-in-one') return runRole(server, role);
  const lines = [
    '',
    `porthole ${version} is running at ${server.url}`,
    `  driver: ${config.driver}; store: ${config.databaseUrl ? 'PostgreSQL (DATABASE_URL)' : `PGlite in ${config.dataDir}`}`,
    '',
    'Open the dashboard with this one-time login link:',
    `  ${server.loginUrl}`,
  ];
  if (server.generatedApiKey) {
    lines.push(
      '',
      'API key (shown this once; porthole keeps only its hash):',
      `  ${server.generatedApiKey}`,
      '  e.g. PORTHOLE_API_KEY=… porthole sessions create',
    );
  }
  process.stderr.write(`${lines.join('\n')}\n\n`);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return process.exit(130);
    stopping = true;
    process.stderr.write(`\n${signal}: stopping; running sandboxes keep running and are adopted at the next start.\n`);
    void server.close().then(() => process.exit(0));
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

/**
 * A split role runs until a signal. A node drains on SIGTERM (the engine's drain or rollout): it
 * takes no new session, its live ones may finish within PORTHOLE_DRAIN_TIMEOUT_MS, then it ends
 * the rest and stops. A second signal, or SIGINT, stops at once.
 */
function runRole(server: RunningServer, role: Role): void {
  process.stderr.write(`porthole ${role} ${version}: listening on ${server.url}\n`);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return process.exit(130);
    stopping = true;
    if (role === 'node' && signal === 'SIGTERM') {
      process.stderr.write(`\n${signal}: draining: no new sessions; waiting for the live ones to finish.\n`);
      void drainNode(server).then(
        () => server.close().then(() => process.exit(0)),
        (error: unknown) => {
          server.logger.error({ err: error }, 'drain failed; stopping');
          void server.close().then(() => process.exit(1));
        },
      );
      return;
    }
    process.stderr.write(`\n${signal}: stopping.\n`);
    void server.close().then(() => process.exit(0));
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

/** Marks this node draining, waits for its live sessions (up to the drain timeout), then ends what is left. */
async function drainNode(server: RunningServer): Promise<void> {
  const { store, node, sessions, config, logger } = server;
  await store.setNodeDraining(node.id, true, 'draining on SIGTERM');
  const deadline = Date.now() + config.node.drainTimeoutMs;
  for (;;) {
    const live = await store.listSessions({ states: liveStates, nodeId: node.id });
    if (live.length === 0) break;
    if (Date.now() >= deadline) {
      logger.warn({ live: live.length }, 'drain timeout: ending the sessions still live');
      for (const session of live) await sessions.end(session.id, 'shutdown', 'The host was drained and stopped before this session finished.').catch(() => {});
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  }
  logger.info({ nodeId: node.id }, 'drained');
}

async function nodesCommand(verb: string | undefined, args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: 'boolean' } } });
  const api = ApiClient.fromEnv(process.env);
  switch (verb) {
    case 'list': {
      const { nodes } = await api.request<{ nodes: NodeView[] }>('GET', '/v1/nodes');
      if (values.json) return print(JSON.stringify(nodes, null, 2));
      print(['ID'.padEnd(28), 'STATE'.padEnd(9), 'GEN'.padEnd(4), 'LOAD'.padEnd(7), 'HEARTBEAT'.padEnd(10), 'URL'].join(' '));
      for (const n of nodes) {
        print(
          [
            n.id.slice(0, 28).padEnd(28),
            n.state.padEnd(9),
            String(n.generation).padEnd(4),
            `${n.load}/${n.capacity}`.padEnd(7),
            `${(n.heartbeatAgeMs / 1000).toFixed(1)} s`.padEnd(10),
            `${n.url ?? '(all-in-one)'}${n.note ? `  ${n.note}` : ''}`,
          ].join(' '),
        );
      }
      return;
    }
    case 'drain':
    case 'undrain': {
      const id = positionals[0];
      if (!id) throw new UsageError(`porthole nodes ${verb} needs a node id (porthole nodes list)`);
      const node = await api.request<NodeView>('POST', `/v1/nodes/${encodeURIComponent(id)}/${verb}`);
      return print(`node ${node.id} is ${node.state} (${node.load} live session${node.load === 1 ? '' : 's'})`);
    }
    default:
      throw new UsageError(`unknown command: porthole nodes ${verb ?? ''}`.trim());
  }
}

/**
 * `porthole run <provider> [options] -- <args…>`: starts a run, says where it runs, streams the
 * CLI's stdout and stderr to ours, and exits with the CLI's code (124 when it hit its time limit,
 * 1 when it could not run).
 */
async function runCommand(args: string[]): Promise<void> {
  const dashes = args.indexOf('--');
  const { values, positionals } = parseArgs({
    args: dashes === -1 ? args : args.slice(0, dashes),
    allowPositionals: true,
    options: { session: { type: 'string' }, user: { type: 'string' }, timeout: { type: 'string' } },
  });
  const cliArgs = dashes === -1 ? positionals.slice(1) : args.slice(dashes + 1);
  const provider = positionals[0];
  if (!provider) throw new UsageError('porthole run needs a provider (demo, claude-code, codex, gemini-cli)');
  if (!(providerNames as readonly string[]).includes(provider)) throw new UsageError(`no provider is named ${provider}; known: ${providerNames.join(', ')}`);
  const timeoutS = values.timeout === undefined ? undefined : Number(values.timeout);
  if (timeoutS !== undefined && !(Number.isInteger(timeoutS) && timeoutS > 0)) throw new UsageError('--timeout takes whole seconds');
  const api = ApiClient.fromEnv(process.env);
  let sessionId = values.session;
  if (!sessionId) {
    // The newest completed session of this provider (and user) whose credential porthole keeps fresh.
    const { sessions } = await api.listSessions({ state: 'completed', ...(values.user ? { userId: values.user } : {}) });
    const found = sessions.find((s) => s.provider === provider && s.credential?.state === 'active');
    if (!found) {
      throw new AppError('CREDENTIALS_NOT_FOUND', {
        message: `No active ${provider} credential${values.user ? ` for ${values.user}` : ''}: sign in first (porthole sessions create --provider ${provider}).`,
      });
    }
    sessionId = found.id;
  }
  const run = await api.createRun({ sessionId: sessionId as never, args: cliArgs, ...(timeoutS ? { timeoutMs: timeoutS * 1000 } : {}) });
  process.stderr.write(`porthole: run ${run.id} with the ${provider} credential of ${sessionId}: starting a sandbox…\n`);
  for await (const event of api.runEvents(run.id)) {
    if (event.type === 'run.output' && event.data !== null) (event.stream === 'stderr' ? process.stderr : process.stdout).write(event.data);
    else if (event.type === 'run.sandbox') process.stderr.write(`porthole: sandbox ready in ${String(event.details.ms)} ms; running ${provider}\n`);
    else if (event.type === 'run.credential_captured') process.stderr.write('porthole: the CLI refreshed the grant; porthole stored the new credential\n');
    else if (event.type === 'run.failed') process.stderr.write(`porthole: the run failed: ${String(event.details.error)}: ${String(event.details.detail)}\n`);
  }
  const done = await api.getRun(run.id);
  if (done.state === 'timed_out') process.stderr.write(`porthole: ${done.detail}\n`);
  process.exitCode = done.state === 'succeeded' ? 0 : done.state === 'timed_out' ? 124 : (done.exitCode ?? 1) || 1;
}

async function main(argv: string[]): Promise<void> {
  const [noun, verb, ...rest] = argv;
  if (!noun || noun === '--help' || noun === 'help') return print(usage);
  if (noun === '--version') return print(version);
  if (noun === 'start') return startCommand(argv.slice(1));
  if (noun === 'server' || noun === 'node') return startCommand(argv.slice(1), noun);
  if (noun === 'nodes') return nodesCommand(verb, rest);
  if (noun === 'sessions') return sessionsCommand(verb, rest);
  if (noun === 'credentials') return credentialsCommand(verb, rest);
  if (noun === 'keys') return keysCommand(verb, rest);
  if (noun === 'webhooks') return webhooksCommand(verb, rest);
  if (noun === 'login-link') return loginLinkCommand();
  if (noun === 'run') return runCommand(argv.slice(1));
  if (noun === 'doctor') {
    const { values } = parseArgs({ args: argv.slice(1), options: { json: { type: 'boolean' } } });
    process.exitCode = await doctorCommand({ json: values.json === true }, process.env, print);
    return;
  }
  throw new UsageError(`unknown command: ${noun}`);
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    process.stderr.write(`${(error as Error).message}\n\n${usage}\n`);
    process.exit(2);
  }
  if (error instanceof ConfigError) {
    process.stderr.write(`porthole: ${error.message}\n`);
    process.exit(2);
  }
  if (error instanceof AppError) {
    process.stderr.write(`porthole: ${error.code}: ${error.message}\n`);
    process.exit(1);
  }
  process.stderr.write(`porthole: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
