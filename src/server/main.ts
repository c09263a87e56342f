import { randomBytes } from 'node:crypto';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { createGvisorDriver } from '../drivers/gvisor/gvisor-driver.js';
import { createLocalDriver } from '../drivers/local/local-driver.js';
import type { Driver } from '../drivers/driver.js';
import type { DemoOidc } from '../demo/oidc/demo-oidc.js';
import { demoClientId } from '../providers/demo.js';
import { openPglite } from '../store/postgres/pglite-database.js';
import { openPostgres } from '../store/postgres/pg-database.js';
import type { Store } from '../store/store.js';
import { version } from '../protocol/version.js';
import type { Config } from './config.js';
import { Keyring } from './credentials/keyring.js';
import { Vault } from './credentials/vault.js';
import { buildApp } from './http/app.js';
import { hashApiKey, newApiKey } from './http/auth.js';
import { createLogger } from './logger.js';
import { createMetrics, type Metrics } from './metrics.js';
import { startMetricsListener } from './metrics-listener.js';
import { prepareDataDir } from './data-dir.js';
import { TrustedOrigins } from './http/origin.js';
import { Relay } from './relay/relay.js';
import { Secret } from './secret.js';
import { loopbackOnlyLookup } from './egress/egress-policy.js';
import { createEgressProxy } from './egress/egress-proxy.js';
import { createSessionDiagnosis } from './sessions/diagnosis.js';
import { createSandboxHost } from './sessions/sandbox-host.js';
import { SessionManager } from './sessions/session-manager.js';
import { ViewerRegistry } from './sessions/viewer-registry.js';
import { EventFeed, notifyingStore } from './sessions/event-feed.js';
import { WebhookDispatcher } from './webhooks/dispatcher.js';
import { Refresher } from './credentials/refresher.js';
import { RunManager } from './runs/run-manager.js';
import { runOnAgent } from '../drivers/endpoint-probes.js';
import { createTicketSigner } from './tickets.js';
import { clusterKeyFrom } from './cluster/cluster-key.js';
import { ClusterRuns } from './cluster/cluster-runs.js';
import { ClusterSessions } from './cluster/cluster-sessions.js';
import { createClusterDiagnosis } from './cluster/cluster-diagnosis.js';
import { NodeMembership } from './cluster/membership.js';
import { createNodeClient, type NodeClient } from './cluster/node-client.js';
import { Reaper } from './cluster/reaper.js';
import { closeCodeOf } from '../protocol/errors.js';
import type { SessionId } from '../protocol/ids.js';
import type { Readiness } from '../protocol/nodes.js';

// The composition root: config → logger → store → driver → sessions → http + relay. The only
// module that picks concrete drivers and stores.

export interface RunningServer {
  readonly url: string;
  /** One-time dashboard login link (Jupyter-style). */
  readonly loginUrl: string;
  /** Set only on the first run: the API key generated then, shown once and stored hashed. */
  readonly generatedApiKey: string | null;
  readonly config: Config;
  readonly logger: Logger;
  readonly store: Store;
  /** The node's parts (all-in-one, `porthole node`); reading one on a `porthole server`, which runs no sandbox, throws. */
  readonly driver: Driver;
  readonly node: NodeMembership;
  readonly sessions: SessionManager;
  readonly relay: Relay;
  readonly metrics: Metrics;
  /** The keyless /metrics of the separate listener (PORTHOLE_METRICS_PORT); null when off. */
  readonly metricsUrl: string | null;
  readonly tickets: ReturnType<typeof createTicketSigner>;
  /** Captured credentials, sealed at rest (AES-256-GCM). */
  readonly vault: Vault;
  readonly refresher: Refresher;
  readonly runs: RunManager;
  /** Every route the HTTP server registered (method, url): the OpenAPI test compares them. */
  readonly routes: ReadonlyArray<{ method: string; url: string }>;
  /** The demo provider's OpenID Connect provider on 127.0.0.1 (issuer, client id); null when PORTHOLE_DEMO_PROVIDER is off. */
  readonly demoOidc: DemoOidc | null;
  close(): Promise<void>;
}

const agentBundle = fileURLToPath(new URL('../../agent/porthole-agent.mjs', import.meta.url));
const demoCli = fileURLToPath(new URL('../../agent/porthole-demo-cli.mjs', import.meta.url));
/** clis/ at the project's root (dist/src/server/main.js → ../../../clis). */
const clis = fileURLToPath(new URL('../../../clis', import.meta.url));

/** A 32-byte key kept in the data directory (mode 0600), created on first run. */
async function loadOrCreateKey(path: string): Promise<Buffer> {
  try {
    const key = await readFile(path);
    if (key.length === 32) return key;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const key = randomBytes(32);
  await writeFile(path, key, { mode: 0o600, flag: 'wx' }).catch(async (error) => {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  });
  await chmod(path, 0o600);
  return readFile(path);
}

/** The all-in-one's node id: PORTHOLE_NODE_ID, else one generated on first start and kept in the data directory. */
async function loadOrCreateNodeId(dataDir: string): Promise<string> {
  const path = join(dataDir, 'node-id');
  const id = `${
    hostname()
      .replace(/[^A-Za-z0-9._-]/g, '-')
      .slice(0, 40) || 'node'
  }-${randomBytes(4).toString('hex')}`;
  await writeFile(path, `${id}\n`, { mode: 0o600, flag: 'wx' }).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'EEXIST') throw error;
  });
  return (await readFile(path, 'utf8')).trim();
}

export interface StartOptions {
  logger?: Logger;
  /** The agent bundle sandboxes run; tests point it at a differently versioned build. */
  agentBundle?: string;
  /**
   * Decorates the driver everything else uses (sessions, relay, diagnosis, reconciler). The fault
   * tests put a fault-injection proxy in front of each sandbox's VNC endpoint this way.
   */
  wrapDriver?: (driver: Driver) => Driver;
}

/** The demo issuer's host:port, the one loopback destination the egress policy lets a sandbox reach. */
function loopbackExceptionOf(issuer: string): { host: string; port: number } {
  const url = new URL(issuer);
  return { host: url.hostname, port: Number(url.port || (url.protocol === 'https:' ? 443 : 80)) };
}

export async function startServer(config: Config, options: StartOptions = {}): Promise<RunningServer> {
  const logger = options.logger ?? createLogger(config.logLevel);
  // Nothing this process creates is for other users unless a chmod says so (the data directory's secrets: data-dir.ts).
  process.umask(0o077);
  const tightened = await prepareDataDir(config.dataDir);
  if (tightened.length > 0) {
    logger.warn(
      { dataDir: config.dataDir, count: tightened.length, first: tightened.slice(0, 5) },
      'the data directory was open to other users (an older porthole, or a chmod): tightened to owner-only; what was open may have been read',
    );
  }
  const cleanup: Array<() => Promise<void>> = [];
  try {
    const feed = new EventFeed();
    const database = config.databaseUrl
      ? await openPostgres(config.databaseUrl.reveal(), {
          onConnectionError: (error) => logger.warn({ err: error, component: 'store' }, 'database connection dropped'),
        })
      : await openPglite(config.dataDir);
    // Every event this server writes wakes its live readers (event streams, webhooks) at once.
    const store = notifyingStore(database, feed);
    cleanup.push(() => store.close());
    await store.migrate();

    // A keyring file readable by others refuses the start (MASTER_KEY_INSECURE) before anything runs.
    const keyring = config.masterKey ? Keyring.fromBase64(config.masterKey) : await Keyring.openFile(join(config.dataDir, 'keyring.json'));
    const vault = new Vault(store, keyring, logger.child({ component: 'vault' }));
    const missing = await vault.missingKeys();
    if (missing.credentials > 0) {
      logger.warn(
        { ...missing, keyId: keyring.current.id },
        'some stored credentials were sealed with a master key this server does not have; they cannot be read',
      );
    }

    const role = config.role;
    /** A node and the all-in-one run sandboxes; a server and the all-in-one serve the API. */
    const runsSandboxes = role !== 'server';
    const servesApi = role !== 'node';
    let generatedApiKey: string | null = null;
    if (servesApi && (await store.countApiKeys()) === 0 && !config.apiKey) {
      const { id, key } = newApiKey();
      generatedApiKey = key;
      await store.addApiKey({ id, name: 'first-run', keyHash: hashApiKey(key), admin: true });
    }

    let demoOidc: DemoOidc | null = null;
    if (config.demoProvider.isEnabled && config.demoProvider.issuer) {
      // Another server's demo provider (PORTHOLE_DEMO_ISSUER): its grants are the ones this server refreshes and verifies.
      demoOidc = { issuer: config.demoProvider.issuer, clientId: demoClientId, close: async () => {} };
    } else if (config.demoProvider.isEnabled && role !== 'node') {
      // Loaded only when enabled: oidc-provider is large and the demo is optional.
      const { startDemoOidc } = await import('../demo/oidc/demo-oidc.js');
      const demoOptions = {
        account: { email: config.demoProvider.email, password: config.demoProvider.password.reveal() },
        accessTokenTtlSeconds: config.demoProvider.accessTokenTtlSeconds,
        logger,
      };
      // A stable port keeps the issuer across restarts: desktops a previous run started (adopted
      // from the warm pool) tunnel to it, and so reach this run's provider. Taken already (and not
      // asked for): any free port, with a warning.
      const started = await startDemoOidc({ ...demoOptions, port: config.demoProvider.port }).catch(async (error: NodeJS.ErrnoException) => {
        if (error.code !== 'EADDRINUSE' || config.demoProvider.isPortSet) throw error;
        logger.warn(
          { port: config.demoProvider.port },
          'demo provider: its default port is taken; using a free one (desktops started by an earlier run cannot reach it: set PORTHOLE_DEMO_PORT)',
        );
        return startDemoOidc({ ...demoOptions, port: 0 });
      });
      demoOidc = started;
      cleanup.push(() => started.close());
    }

    const metrics = createMetrics(() => store.countSessions());
    // A cluster's servers and nodes share the ticket key (derived from PORTHOLE_CLUSTER_KEY); an all-in-one keeps its own.
    const clusterKey = config.clusterKey ? clusterKeyFrom(Buffer.from(config.clusterKey.reveal(), 'base64')) : null;
    const signingKey = clusterKey?.ticketKey ?? (await loadOrCreateKey(join(config.dataDir, 'signing.key')));
    const tickets = createTicketSigner(signingKey, config.ticketTtlMs, { maxChainMs: config.maxLifetimeMs });
    const viewers = new ViewerRegistry();
    const nodeClient = clusterKey ? createNodeClient(clusterKey) : null;
    /** The demo provider this server trusts (its own, or PORTHOLE_DEMO_ISSUER's); undefined when off. */
    const trustedDemo = () => (demoOidc ? { issuer: demoOidc.issuer, clientId: demoOidc.clientId } : undefined);
    // porthole is the one refresher of each stored grant (docs/ARCHITECTURE.md, Credentials).
    const refresher = new Refresher({
      store,
      vault,
      log: logger.child({ component: 'refresher' }),
      metrics,
      // The demo provider's grants only where this server has a demo provider to refresh them at.
      providers: config.refreshProviders.filter((name) => name !== 'demo' || demoOidc !== null),
      context: () => {
        const demo = trustedDemo();
        return { fetch: globalThis.fetch, ...(demo ? { demo } : {}) };
      },
    });
    // Servers refresh ahead of expiry; a node only lends grants to its runs (the store's leases keep one refresher per grant).
    if (servesApi) {
      refresher.start();
      cleanup.push(() => refresher.stop());
    }

    /** This process as a node: the all-in-one and `porthole node`. */
    const node = runsSandboxes ? await startNodeParts() : null;
    // ---- the node: driver, sandboxes, sessions booted here, per-node reconcile, membership ----
    async function startNodeParts() {
      const driverOptions = {
        dataDir: config.dataDir,
        sandboxUids: config.sandboxUids,
        homeMiB: config.sandboxLimits.homeMiB,
        limits: { memoryBytes: config.sandboxLimits.memoryMiB * 2 ** 20, pids: config.sandboxLimits.pids, cpuWeight: config.sandboxLimits.cpuWeight },
        agentBundle: options.agentBundle ?? agentBundle,
        clis,
        demoCli,
        logger: logger.child({ component: 'driver' }),
      };
      const baseDriver =
        config.driver === 'gvisor' ? createGvisorDriver({ ...driverOptions, platform: config.gvisorPlatform }) : createLocalDriver(driverOptions);
      const driver = options.wrapDriver ? options.wrapDriver(baseDriver) : baseDriver;
      cleanup.push(() => driver.close());
      /** Set once listening: how the agents of sandboxes that share this host's network reach this process. */
      let agentServerUrl = '';
      // Sandboxes with no network of their own get porthole's egress proxy (their only way out) and an
      // agent channel (their only way in) on sockets of their own: src/server/sessions/sandbox-host.ts.
      const hostServices = [...(demoOidc ? [loopbackExceptionOf(demoOidc.issuer)] : []), ...config.egress.loopback];
      const egress = createEgressProxy({
        policy: {
          allow: config.egress.allow,
          // The host's loopback services a sandbox may reach (and finds tunnelled to the same address): the demo issuer and the operator's.
          loopbackExceptions: hostServices,
          ...(config.sandboxLoopbackOnly ? { lookup: loopbackOnlyLookup } : {}),
        },
        upstream: config.egress.upstream ? new URL(config.egress.upstream) : null,
        logger: logger.child({ component: 'egress' }),
      });
      cleanup.push(() => egress.close());
      let route: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => {
        res.writeHead(503).end();
      };
      const sandboxHost = createSandboxHost({ egress, route: (req, res) => route(req, res), store, logger });
      cleanup.push(() => sandboxHost.close());
      /** What every sandbox is started with, a session's or a run's. */
      const sandboxSpec = {
        width: config.desktopWidth,
        height: config.desktopHeight,
        startUrl: config.sandboxStartUrl,
        loopbackOnly: config.sandboxLoopbackOnly,
        leaseMs: config.sandboxLeaseMs,
        tunnels: hostServices,
      };
      /** Set below: the runs' sandboxes are theirs, not the reconciler's to destroy. */
      let runs: RunManager | null = null;
      const membership = new NodeMembership({
        store,
        log: logger.child({ component: 'node' }),
        id: config.node.id ?? (await loadOrCreateNodeId(config.dataDir)),
        url: role === 'node' ? config.node.url : null,
        capacity: config.node.capacity,
        leaseMs: config.node.leaseMs,
        fence: async (why: string) => void (await sessions.fenceAll(why)),
        fenceOnSilence: role === 'node',
      });
      await membership.register();
      membership.start();
      cleanup.push(() => membership.stop());
      const sessions = new SessionManager({
        node: membership,
        isRunSandbox: (sandboxId) => runs?.ownsSandbox(sandboxId) ?? false,
        store,
        driver,
        viewers,
        logger,
        desktop: sandboxSpec,
        metrics,
        bootTimeoutMs: config.bootTimeoutMs,
        idleTimeoutMs: config.idleTimeoutMs,
        maxLifetimeMs: config.maxLifetimeMs,
        reconcileIntervalMs: config.reconcileIntervalMs,
        maxSessions: config.maxSessions,
        warmPool: config.warmPool,
        login: {
          // The agent talks to this process directly on loopback, never through a proxy in front.
          serverUrl: () => agentServerUrl,
          demo: trustedDemo,
        },
        vault,
        sandboxHost,
      });
      cleanup.push(() => sessions.close());
      const reconciled = await sessions.reconcile();
      if (reconciled.ended + reconciled.destroyed > 0) logger.info(reconciled, 'start-up reconcile: state brought in line with running sandboxes');
      sessions.startReconciling();

      const runManager = new RunManager({
        store,
        vault,
        refresher,
        driver,
        sandboxHost,
        feed,
        log: logger.child({ component: 'runs' }),
        runOnAgent,
        sandbox: sandboxSpec,
        demo: trustedDemo,
        maxRuns: config.maxSessions,
        startTimeoutMs: config.bootTimeoutMs,
      });
      runs = runManager;
      cleanup.push(() => runManager.close());
      return {
        driver,
        membership,
        sessions,
        runs: runManager,
        diagnose: createSessionDiagnosis({ store, driver, tickets, logger, node: membership }),
        /** The HTTP app, once built: the agent channel's requests go to it. */
        setRoute: (next: typeof route) => {
          route = next;
        },
        setAgentServerUrl: (url: string) => {
          agentServerUrl = url;
        },
      };
    }

    // ---- the server: API, dashboard, edge relay, reaper, webhooks ----
    const sessions = node?.sessions ?? new ClusterSessions({ store, nodes: nodeClient as NodeClient, metrics, log: logger });
    const runs = node?.runs ?? new ClusterRuns({ store, nodes: nodeClient as NodeClient, log: logger.child({ component: 'runs' }) });
    const diagnose = node?.diagnose ?? createClusterDiagnosis({ store, nodes: nodeClient as NodeClient, tickets, logger });
    if (servesApi) {
      // One reaper among all servers (the advisory lock); the all-in-one's finds other all-in-ones lost on a shared PostgreSQL.
      const reaper = new Reaper({
        store,
        log: logger.child({ component: 'reaper' }),
        intervalMs: Math.max(250, Math.floor(config.node.leaseMs / 5)),
        graceMs: config.node.leaseMs,
        onReaped: (_node, failed) => {
          for (const id of failed) viewers.closeAll(id as SessionId, closeCodeOf('NODE_LOST'), 'NODE_LOST');
        },
      });
      reaper.start();
      cleanup.push(() => reaper.stop());
    }
    const loginToken = new Secret(randomBytes(18).toString('base64url'));
    const origins = new TrustedOrigins(config.publicUrl, config.allowedOrigins);
    const readiness = async (): Promise<Readiness> => {
      await store.getNode(node?.membership.id ?? '');
      node?.membership.assertInGoodStanding();
      const record = node?.membership.record;
      return {
        ok: true,
        version,
        role,
        node: node
          ? { id: node.membership.id, generation: node.membership.generation, state: record?.state ?? 'active', fenced: node.membership.fencedBecause }
          : null,
      };
    };
    const { app, registered } = await buildApp({
      logger,
      store,
      sessions,
      apiKey: config.apiKey,
      tickets,
      ticketTtlMs: config.ticketTtlMs,
      origins,
      bodyLimitBytes: config.bodyLimitBytes,
      loginToken,
      metrics,
      vault,
      diagnose,
      feed,
      refresher,
      runs,
      readiness,
      ...(role === 'node' && node && clusterKey
        ? { internal: { key: clusterKey, membership: node.membership, sessions: node.sessions, store, diagnose: node.diagnose, runs: node.runs } }
        : {}),
    });
    if (servesApi) {
      const webhooks = new WebhookDispatcher({
        store,
        vault,
        feed,
        log: logger.child({ component: 'webhooks' }),
        metrics,
        envTarget: config.webhook ? { url: config.webhook.url, secrets: config.webhook.secrets } : null,
        retryScheduleMs: config.webhookRetryScheduleMs,
      });
      webhooks.start();
      cleanup.push(() => webhooks.close());
    }
    node?.setRoute((req, res) => app.routing(req, res));
    const relay = new Relay({
      sessions: node?.sessions ?? null,
      viewers,
      tickets,
      logger,
      allowedOrigins: origins,
      pingIntervalMs: config.pingIntervalMs,
      metrics,
      ...(clusterKey
        ? {
            cluster: {
              store,
              self: node ? () => node.membership.fence() : null,
              nodes: nodeClient,
              key: clusterKey,
              servesViewers: servesApi,
            },
          }
        : {}),
    });
    relay.attach(app.server);
    if (role === 'node') {
      // A node's port is for servers and probes: its health, the internal hop and the node relay — not the API or the dashboard.
      app.server.removeAllListeners('request');
      app.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
        const path = (req.url ?? '/').split('?')[0] ?? '/';
        if (path === '/healthz' || path === '/readyz' || path.startsWith('/internal/')) return app.routing(req, res);
        res.writeHead(404, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        res.end(
          JSON.stringify({
            error: { code: 'ROUTE_NOT_FOUND', message: 'A porthole node serves only /healthz, /readyz and the internal hop; the API is on the servers.' },
          }),
        );
      });
    }
    await app.listen({ host: config.host, port: config.port });
    // Viewers first get a close code that says why (they reconnect to the next server), then HTTP stops.
    cleanup.push(async () => {
      await relay.close();
      await app.close();
    });
    const address = app.server.address() as AddressInfo;
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    node?.setAgentServerUrl(`http://${host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host}:${address.port}`);
    origins.listening(address);
    const baseUrl = origins.baseUrl;
    const metricsListener = config.metricsListener ? await startMetricsListener(metrics, config.metricsListener) : null;
    if (metricsListener) {
      cleanup.push(() => metricsListener.close());
      logger.info({ url: `${metricsListener.url}/metrics` }, 'metrics served without a key (PORTHOLE_METRICS_PORT)');
    }
    logger.info(
      {
        url: baseUrl,
        version,
        role,
        ...(node ? { driver: node.driver.name, nodeId: node.membership.id, generation: node.membership.generation } : {}),
        store: config.databaseUrl ? 'postgres' : 'pglite',
        dataDir: config.dataDir,
      },
      'porthole listening',
    );

    let closing: Promise<void> | null = null;
    const nodePart = <K extends keyof NonNullable<typeof node>>(key: K): NonNullable<typeof node>[K] => {
      if (!node) throw new Error(`${String(key)}: this process is a porthole server, which runs no sandbox`);
      return node[key];
    };
    return {
      url: baseUrl,
      loginUrl: `${baseUrl}/login?token=${loginToken.reveal()}`,
      generatedApiKey,
      config,
      logger,
      store,
      get driver() {
        return nodePart('driver');
      },
      get node() {
        return nodePart('membership');
      },
      get sessions() {
        return nodePart('sessions');
      },
      relay,
      metrics,
      metricsUrl: metricsListener ? `${metricsListener.url}/metrics` : null,
      tickets,
      vault,
      refresher,
      get runs() {
        return nodePart('runs');
      },
      routes: registered,
      demoOidc,
      close: () =>
        (closing ??= (async () => {
          for (const undo of cleanup.reverse()) await undo().catch((error) => logger.error({ err: error }, 'shutdown step failed'));
          logger.flush?.();
        })()),
    };
  } catch (error) {
    for (const undo of cleanup.reverse()) await undo().catch(() => {});
    throw error;
  }
}
