import { readFileSync } from 'node:fs';
import { availableParallelism, hostname, totalmem } from 'node:os';
import { resolve } from 'node:path';
import { z } from 'zod';
import { providerNames, type ProviderName } from '../protocol/session-states.js';
import { defaultDemoAccount } from '../providers/demo.js';
import { allowEntryProblem } from './egress/egress-policy.js';
import { Secret } from './secret.js';

// The one place that reads the environment. Every problem is reported at once; the result is frozen.

const port = z.coerce.number().int().min(0).max(65535);
const positiveMs = z.coerce.number().int().min(1);
/** An origin as browsers send it: http(s), host, port, nothing else (they go into Origin checks and CSP). */
const isOrigin = (value: string) => {
  try {
    const url = new URL(value);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.origin === value;
  } catch {
    return false;
  }
};

/** A Standard Webhooks secret: `whsec_` and base64 of at least 24 bytes. */
const isWebhookSecret = (value: string) => {
  const body = value.startsWith('whsec_') ? value.slice('whsec_'.length) : '';
  return /^[A-Za-z0-9+/]+={0,2}$/.test(body) && Buffer.from(body, 'base64').length >= 24;
};

/**
 * The Standard Webhooks schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h after the first attempt —
 * eight attempts over 27.6 hours, so a receiver that is down for a day loses nothing.
 */
export const defaultWebhookRetryScheduleMs = [5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000];

const envSchema = z.object({
  PORTHOLE_HOST: z.string().default('127.0.0.1'),
  PORTHOLE_PORT: port.default(8480),
  // A second listener for /metrics alone, without a key; off unless a port is given.
  PORTHOLE_METRICS_HOST: z.string().min(1).default('127.0.0.1'),
  PORTHOLE_METRICS_PORT: port.optional(),
  PORTHOLE_PUBLIC_URL: z.url().optional(),
  PORTHOLE_ALLOWED_ORIGINS: z
    .string()
    .refine(
      (v) =>
        v
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
          .every(isOrigin),
      'must be comma-separated origins, each scheme://host[:port] with no path or trailing slash (e.g. https://app.example.com)',
    )
    .default(''),
  PORTHOLE_DATA_DIR: z.string().default('.porthole'),
  // Every session's webhooks (session.ready/completed/failed/ended) go here, signed per Standard Webhooks.
  PORTHOLE_WEBHOOK_URL: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).optional(),
  // whsec_<base64 of at least 24 bytes>; several, space-separated, during a rotation (each signs).
  PORTHOLE_WEBHOOK_SECRET: z
    .string()
    .refine((v) => {
      const secrets = v.split(/\s+/).filter(Boolean);
      return secrets.length > 0 && secrets.every(isWebhookSecret);
    }, 'must be whsec_ and the base64 of at least 24 random bytes (e.g. whsec_$(openssl rand -base64 32)); several separated by spaces while rotating')
    .optional(),
  // Delays between a webhook's attempts; the last one is retried this many times in all.
  PORTHOLE_WEBHOOK_RETRY_SCHEDULE_MS: z
    .string()
    .regex(/^\d+(,\d+)*$/, 'must be comma-separated milliseconds, e.g. 5000,300000')
    .transform((v) => v.split(',').map(Number))
    .optional(),
  PORTHOLE_API_KEY: z.string().min(16, 'must be at least 16 characters').optional(),
  // Exactly 44 characters of standard base64 decoding to 32 bytes; the message never echoes the value.
  PORTHOLE_MASTER_KEY: z
    .string()
    .refine(
      (v) => /^[A-Za-z0-9+/]{43}=$/.test(v) && Buffer.from(v, 'base64').toString('base64') === v,
      'must be the base64 of 32 random bytes (e.g. openssl rand -base64 32)',
    )
    .optional(),
  // One secret for a cluster of `porthole server`s and `porthole node`s: viewer tickets and the internal hop (src/server/cluster/cluster-key.ts).
  PORTHOLE_CLUSTER_KEY: z
    .string()
    .refine(
      (v) => /^[A-Za-z0-9+/]{43}=$/.test(v) && Buffer.from(v, 'base64').toString('base64') === v,
      'must be the base64 of 32 random bytes (e.g. openssl rand -base64 32), the same on every server and node',
    )
    .optional(),
  // A node's name in the catalog (default: the host name; an all-in-one keeps a generated one in its data directory).
  PORTHOLE_NODE_ID: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'must be 1–63 letters, digits, dots, dashes or underscores')
    .optional(),
  // How servers reach a `porthole node` (its relay and internal routes), e.g. http://10.0.0.7:8481.
  PORTHOLE_NODE_URL: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).optional(),
  // Live sessions one node takes (default PORTHOLE_MAX_SESSIONS).
  PORTHOLE_NODE_CAPACITY: z.coerce.number().int().min(0).max(1000).optional(),
  // A node with no heartbeat for this long is declared lost (its sessions fail NODE_LOST); it beats every fifth of it.
  PORTHOLE_NODE_LEASE_MS: z.coerce.number().int().min(1_000).max(600_000).default(15_000),
  // On SIGTERM a node drains: no new sessions; its live ones may finish within this, then they end.
  PORTHOLE_DRAIN_TIMEOUT_MS: z.coerce
    .number()
    .int()
    .min(0)
    .max(24 * 3600_000)
    .default(600_000),
  // The providers whose stored grants this server refreshes ahead of expiry (comma-separated; empty: none).
  PORTHOLE_REFRESH_PROVIDERS: z
    .string()
    .refine(
      (v) =>
        v
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
          .every((name) => (providerNames as readonly string[]).includes(name)),
      `must be comma-separated provider names (${providerNames.join(', ')})`,
    )
    .transform(
      (v) =>
        v
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean) as ProviderName[],
    )
    .default([...providerNames]),
  PORTHOLE_DRIVER: z.enum(['local', 'gvisor']).default('local'),
  // gVisor's platform (how its kernel intercepts the sandbox's system calls): ptrace runs anywhere;
  // kvm is faster where /dev/kvm carries it (not under nested PVM: its sandboxes hang there).
  PORTHOLE_GVISOR_PLATFORM: z.enum(['ptrace', 'kvm']).default('ptrace'),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL')
    .optional(),
  PORTHOLE_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  // One host uid (and gid) per sandbox, from this range, when porthole runs as root.
  PORTHOLE_SANDBOX_UIDS: z
    .string()
    .regex(/^\d+-\d+$/, 'must be a range FIRST-LAST, e.g. 61000-61999')
    .transform((v) => v.split('-').map(Number) as [number, number])
    .refine(([first, last]) => first >= 1000 && last <= 4294967294 && first <= last, 'must be unprivileged uids (≥ 1000), FIRST ≤ LAST')
    .default([61000, 61999]),
  PORTHOLE_SANDBOX_START_URL: z.string().min(1).optional(),
  PORTHOLE_SANDBOX_LOOPBACK_ONLY: z.stringbool().default(false),
  PORTHOLE_SANDBOX_LEASE_MS: z.coerce
    .number()
    .int()
    .min(1000)
    .default(5 * 60_000),
  PORTHOLE_SANDBOX_MEMORY_MIB: z.coerce
    .number()
    .int()
    .min(64)
    .max(1024 * 1024)
    .default(1024),
  PORTHOLE_SANDBOX_PIDS: z.coerce.number().int().min(16).max(4_194_304).default(512),
  PORTHOLE_SANDBOX_CPU_WEIGHT: z.coerce.number().int().min(1).max(10_000).default(100),
  PORTHOLE_SANDBOX_HOME_MIB: z.coerce
    .number()
    .int()
    .min(16)
    .max(1024 * 1024)
    .default(256),
  PORTHOLE_DESKTOP_WIDTH: z.coerce.number().int().min(320).max(7680).default(1280),
  PORTHOLE_DESKTOP_HEIGHT: z.coerce.number().int().min(200).max(4320).default(800),
  PORTHOLE_BOOT_TIMEOUT_MS: positiveMs.default(30_000),
  PORTHOLE_IDLE_TIMEOUT_MS: positiveMs.default(10 * 60_000),
  PORTHOLE_MAX_LIFETIME_MS: positiveMs.default(60 * 60_000),
  PORTHOLE_RECONCILE_INTERVAL_MS: positiveMs.default(5_000),
  PORTHOLE_TICKET_TTL_MS: positiveMs.default(60_000),
  PORTHOLE_PING_INTERVAL_MS: positiveMs.default(20_000),
  PORTHOLE_MAX_SESSIONS: z.coerce.number().int().min(1).max(1000).default(8),
  PORTHOLE_WARM_POOL: z.coerce.number().int().min(0).max(64).optional(),
  PORTHOLE_WARM_POOL_MAX_AGE_MS: positiveMs.default(30 * 60_000),
  PORTHOLE_BODY_LIMIT_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .max(16 * 1024 * 1024)
    .default(64 * 1024),
  PORTHOLE_DEMO_PROVIDER: z.stringbool().default(true),
  // Default: PORTHOLE_PORT + 1, so the issuer stays the same across restarts (0 when PORTHOLE_PORT is 0).
  PORTHOLE_DEMO_PORT: port.optional(),
  PORTHOLE_DEMO_EMAIL: z.email().default(defaultDemoAccount.email),
  PORTHOLE_DEMO_PASSWORD: z.string().min(1).default(defaultDemoAccount.password),
  // Up to a day: its refresh tokens live 14 days, and a short lifetime is what exercises refresh.
  PORTHOLE_DEMO_ACCESS_TOKEN_TTL_S: z.coerce.number().int().min(1).max(86_400).default(3600),
  // Another server's demo provider to use instead of starting one (several servers on one store share one issuer).
  PORTHOLE_DEMO_ISSUER: z
    .url({ protocol: /^http$/, hostname: /^127\.0\.0\.1$/, error: 'must be http://127.0.0.1:<port> (the demo provider listens on loopback only)' })
    .transform((v) => v.replace(/\/+$/, ''))
    .optional(),
  // Sandbox egress (src/server/egress): an allow list (empty: the public internet) and an optional upstream proxy.
  PORTHOLE_EGRESS_ALLOW: z
    .string()
    .default('')
    .transform((v) =>
      v
        .split(',')
        .map((entry) => entry.trim())
        .filter(Boolean),
    )
    .superRefine((entries, ctx) => {
      for (const entry of entries) {
        const problem = allowEntryProblem(entry);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      }
    }),
  // host:port services on this host's loopback that sandboxes may reach (an on-host IdP, a test page).
  PORTHOLE_EGRESS_LOOPBACK: z
    .string()
    .default('')
    .transform((v) =>
      v
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    )
    .refine(
      (list) => list.every((s) => /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost):\d{1,5}$/.test(s) && Number(s.split(':')[1]) <= 65535),
      'must be a comma list of 127.x.x.x:PORT or localhost:PORT',
    )
    .transform((list) => list.map((s) => ({ host: s.split(':')[0]!, port: Number(s.split(':')[1]) }))),
  PORTHOLE_EGRESS_UPSTREAM: z.url({ protocol: /^http$/, error: 'must be an http:// proxy URL' }).optional(),
});

export const welcomePage =
  'data:text/html,<title>porthole</title><body style="font:20px sans-serif;margin:3em;color:%23223">' +
  '<h1>porthole sandbox</h1><p>This browser runs inside an isolated desktop. It is destroyed when the session ends.</p></body>';

/** `start`: server and node in one process; `server` and `node`: the split for more than one host. */
export type Role = 'all-in-one' | 'server' | 'node';

export interface Config {
  readonly role: Role;
  readonly host: string;
  readonly port: number;
  /** Base URL people reach porthole at; viewer URLs are built on it. Empty origin until listening when port is 0. */
  readonly publicUrl: string | null;
  readonly allowedOrigins: readonly string[];
  /** The separate listener serving /metrics without a key; null: off (/metrics is then only on the API port, with a key). */
  readonly metricsListener: { readonly host: string; readonly port: number } | null;
  readonly dataDir: string;
  readonly apiKey: Secret | null;
  /** PORTHOLE_WEBHOOK_URL and its secrets (the first signs new deliveries' headers; all of them sign, for rotation). */
  readonly webhook: { readonly url: string; readonly secrets: readonly Secret[] } | null;
  /** Delays between a webhook's attempts (Standard Webhooks' schedule unless set). */
  readonly webhookRetryScheduleMs: readonly number[];
  /** The master key sealing stored credentials (base64 of 32 bytes); null: a keyring file in dataDir, created on first run. */
  readonly masterKey: Secret | null;
  /** The providers whose grants this server refreshes (PORTHOLE_REFRESH_PROVIDERS; all by default). */
  readonly refreshProviders: readonly ProviderName[];
  readonly driver: 'local' | 'gvisor';
  /** PORTHOLE_GVISOR_PLATFORM: for the gvisor driver. */
  readonly gvisorPlatform: 'ptrace' | 'kvm';
  readonly databaseUrl: Secret | null;
  /** PORTHOLE_CLUSTER_KEY: required by `server` and `node`. */
  readonly clusterKey: Secret | null;
  /** This process as a node (all-in-one or `node`); id null: the all-in-one's generated one. */
  readonly node: {
    readonly id: string | null;
    readonly url: string | null;
    readonly capacity: number;
    readonly leaseMs: number;
    readonly drainTimeoutMs: number;
  };
  readonly logLevel: string;
  /** Host uids for sandboxes (one each; gid = uid), when porthole runs as root. */
  readonly sandboxUids: { readonly first: number; readonly last: number };
  readonly sandboxStartUrl: string;
  /** The sandbox's Chromium resolves no host name but loopback (air-gapped hosts, tests). */
  readonly sandboxLoopbackOnly: boolean;
  /** A sandbox whose server has not been heard from for this long ends itself (Ctrl+C and never started again leaves nothing running). */
  readonly sandboxLeaseMs: number;
  /**
   * Per-sandbox limits, enforced with cgroups where the host allows (porthole doctor says). The tmpfs
   * home (homeMiB) is memory too: its pages count against memoryMiB.
   */
  readonly sandboxLimits: { readonly memoryMiB: number; readonly pids: number; readonly cpuWeight: number; readonly homeMiB: number };
  readonly desktopWidth: number;
  readonly desktopHeight: number;
  readonly bootTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly maxLifetimeMs: number;
  readonly reconcileIntervalMs: number;
  readonly ticketTtlMs: number;
  readonly pingIntervalMs: number;
  readonly maxSessions: number;
  /** Desktops started ahead (src/server/sessions/warm-pool.ts): how many, and how old one may get before it is replaced. */
  readonly warmPool: { readonly size: number; readonly maxAgeMs: number };
  readonly bodyLimitBytes: number;
  /** porthole's own OpenID Connect provider for the `demo` provider, on 127.0.0.1 only. */
  readonly demoProvider: {
    readonly isEnabled: boolean;
    readonly port: number;
    /** PORTHOLE_DEMO_PORT was given: a port in use is an error then, not a reason to pick another. */
    readonly isPortSet: boolean;
    readonly email: string;
    readonly password: Secret;
    /** How long the demo provider's access tokens live. */
    readonly accessTokenTtlSeconds: number;
    /** Another server's demo provider to use instead of starting one (PORTHOLE_DEMO_ISSUER); null: start our own. */
    readonly issuer: string | null;
  };
  /** Where sandboxes may connect through porthole's egress proxy: `allow` empty means the public internet; `upstream` an http:// proxy to go through. */
  readonly egress: {
    readonly allow: readonly string[];
    readonly upstream: string | null;
    readonly loopback: readonly { readonly host: string; readonly port: number }[];
  };
}

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** Secrets may also be given as NAME_FILE: the file's content, trimmed. */
function withFileSecrets(env: Record<string, string | undefined>, problems: string[]): Record<string, string | undefined> {
  const out = { ...env };
  for (const name of ['PORTHOLE_API_KEY', 'DATABASE_URL', 'PORTHOLE_DEMO_PASSWORD', 'PORTHOLE_MASTER_KEY', 'PORTHOLE_WEBHOOK_SECRET', 'PORTHOLE_CLUSTER_KEY']) {
    const file = env[`${name}_FILE`];
    if (file === undefined || file === '') continue;
    if (env[name] !== undefined) {
      problems.push(`${name} and ${name}_FILE are both set; set one`);
      continue;
    }
    try {
      out[name] = readFileSync(file, 'utf8').trim();
    } catch (error) {
      problems.push(`${name}_FILE: cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
    }
  }
  // An empty variable means "not set", as shells and compose files often leave them.
  for (const [key, value] of Object.entries(out)) if (value === '') delete out[key];
  return out;
}

/**
 * The warm pool's size when PORTHOLE_WARM_POOL is unset: one desktop per two cores, at most four,
 * and none where memory is short (an idle pooled desktop holds about a third of a GiB).
 */
export function defaultWarmPoolSize(cores = availableParallelism(), memoryBytes = totalmem()): number {
  if (memoryBytes < 2 * 1024 ** 3) return 0;
  return Math.min(4, Math.max(1, Math.floor(cores / 2)));
}

export function loadConfig(env: Record<string, string | undefined> = process.env, role: Role = 'all-in-one'): Config {
  const problems: string[] = [];
  const merged = withFileSecrets(env, problems);
  // A node listens beside a server on one host by default.
  if (role === 'node' && merged.PORTHOLE_PORT === undefined) merged.PORTHOLE_PORT = '8481';
  // The split roles are reached from other hosts (servers from a load balancer, nodes from servers).
  if (role !== 'all-in-one' && merged.PORTHOLE_HOST === undefined) merged.PORTHOLE_HOST = '0.0.0.0';
  const parsed = envSchema.safeParse(merged);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) problems.push(`${issue.path.join('.')}: ${issue.message}`);
  }
  if (problems.length > 0 || !parsed.success) throw new ConfigError(problems);
  const e = parsed.data;
  if (e.PORTHOLE_SANDBOX_HOME_MIB >= e.PORTHOLE_SANDBOX_MEMORY_MIB) {
    throw new ConfigError([
      `PORTHOLE_SANDBOX_HOME_MIB: ${e.PORTHOLE_SANDBOX_HOME_MIB} must be less than PORTHOLE_SANDBOX_MEMORY_MIB (${e.PORTHOLE_SANDBOX_MEMORY_MIB}): the home's files count against the sandbox's memory`,
    ]);
  }
  if ((e.PORTHOLE_WEBHOOK_URL === undefined) !== (e.PORTHOLE_WEBHOOK_SECRET === undefined)) {
    throw new ConfigError([
      'PORTHOLE_WEBHOOK_URL and PORTHOLE_WEBHOOK_SECRET go together: set both (the secret signs every webhook; your receiver verifies with it)',
    ]);
  }
  if (role !== 'all-in-one') {
    const missing = [
      ...(e.DATABASE_URL ? [] : ['DATABASE_URL (the PostgreSQL every server and node shares: the catalog)']),
      ...(e.PORTHOLE_CLUSTER_KEY ? [] : ['PORTHOLE_CLUSTER_KEY (the same on every server and node: openssl rand -base64 32)']),
      ...(e.PORTHOLE_MASTER_KEY ? [] : ['PORTHOLE_MASTER_KEY (the same on every server and node: it seals the credentials)']),
      ...(role === 'node' && !e.PORTHOLE_NODE_URL ? ['PORTHOLE_NODE_URL (how servers reach this node, e.g. http://10.0.0.7:8481)'] : []),
    ];
    if (missing.length > 0) throw new ConfigError(missing.map((name) => `porthole ${role} needs ${name}`));
  }
  const publicUrl = e.PORTHOLE_PUBLIC_URL?.replace(/\/+$/, '') ?? null;
  const allowedOrigins = e.PORTHOLE_ALLOWED_ORIGINS.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  return Object.freeze({
    role,
    host: e.PORTHOLE_HOST,
    port: e.PORTHOLE_PORT,
    publicUrl,
    allowedOrigins: Object.freeze(publicUrl ? [new URL(publicUrl).origin, ...allowedOrigins] : allowedOrigins),
    metricsListener: e.PORTHOLE_METRICS_PORT === undefined ? null : Object.freeze({ host: e.PORTHOLE_METRICS_HOST, port: e.PORTHOLE_METRICS_PORT }),
    dataDir: resolve(e.PORTHOLE_DATA_DIR),
    apiKey: e.PORTHOLE_API_KEY ? new Secret(e.PORTHOLE_API_KEY) : null,
    webhook:
      e.PORTHOLE_WEBHOOK_URL && e.PORTHOLE_WEBHOOK_SECRET
        ? Object.freeze({
            url: e.PORTHOLE_WEBHOOK_URL,
            secrets: Object.freeze(
              e.PORTHOLE_WEBHOOK_SECRET.split(/\s+/)
                .filter(Boolean)
                .map((v) => new Secret(v)),
            ),
          })
        : null,
    webhookRetryScheduleMs: Object.freeze(e.PORTHOLE_WEBHOOK_RETRY_SCHEDULE_MS ?? defaultWebhookRetryScheduleMs),
    masterKey: e.PORTHOLE_MASTER_KEY ? new Secret(e.PORTHOLE_MASTER_KEY) : null,
    refreshProviders: Object.freeze(e.PORTHOLE_REFRESH_PROVIDERS),
    driver: e.PORTHOLE_DRIVER,
    gvisorPlatform: e.PORTHOLE_GVISOR_PLATFORM,
    databaseUrl: e.DATABASE_URL ? new Secret(e.DATABASE_URL) : null,
    clusterKey: e.PORTHOLE_CLUSTER_KEY ? new Secret(e.PORTHOLE_CLUSTER_KEY) : null,
    node: Object.freeze({
      id: e.PORTHOLE_NODE_ID ?? (role === 'node' ? hostname() : null),
      url: e.PORTHOLE_NODE_URL?.replace(/\/+$/, '') ?? null,
      capacity: e.PORTHOLE_NODE_CAPACITY ?? e.PORTHOLE_MAX_SESSIONS,
      leaseMs: e.PORTHOLE_NODE_LEASE_MS,
      drainTimeoutMs: e.PORTHOLE_DRAIN_TIMEOUT_MS,
    }),
    logLevel: e.PORTHOLE_LOG_LEVEL,
    sandboxUids: Object.freeze({ first: e.PORTHOLE_SANDBOX_UIDS[0], last: e.PORTHOLE_SANDBOX_UIDS[1] }),
    sandboxStartUrl: e.PORTHOLE_SANDBOX_START_URL ?? welcomePage,
    sandboxLoopbackOnly: e.PORTHOLE_SANDBOX_LOOPBACK_ONLY,
    sandboxLeaseMs: e.PORTHOLE_SANDBOX_LEASE_MS,
    sandboxLimits: Object.freeze({
      memoryMiB: e.PORTHOLE_SANDBOX_MEMORY_MIB,
      pids: e.PORTHOLE_SANDBOX_PIDS,
      cpuWeight: e.PORTHOLE_SANDBOX_CPU_WEIGHT,
      homeMiB: e.PORTHOLE_SANDBOX_HOME_MIB,
    }),
    desktopWidth: e.PORTHOLE_DESKTOP_WIDTH,
    desktopHeight: e.PORTHOLE_DESKTOP_HEIGHT,
    bootTimeoutMs: e.PORTHOLE_BOOT_TIMEOUT_MS,
    idleTimeoutMs: e.PORTHOLE_IDLE_TIMEOUT_MS,
    maxLifetimeMs: e.PORTHOLE_MAX_LIFETIME_MS,
    reconcileIntervalMs: e.PORTHOLE_RECONCILE_INTERVAL_MS,
    ticketTtlMs: e.PORTHOLE_TICKET_TTL_MS,
    pingIntervalMs: e.PORTHOLE_PING_INTERVAL_MS,
    maxSessions: e.PORTHOLE_MAX_SESSIONS,
    warmPool: Object.freeze({ size: e.PORTHOLE_WARM_POOL ?? defaultWarmPoolSize(), maxAgeMs: e.PORTHOLE_WARM_POOL_MAX_AGE_MS }),
    bodyLimitBytes: e.PORTHOLE_BODY_LIMIT_BYTES,
    demoProvider: Object.freeze({
      isEnabled: e.PORTHOLE_DEMO_PROVIDER,
      port: e.PORTHOLE_DEMO_PORT ?? (e.PORTHOLE_PORT === 0 || e.PORTHOLE_PORT === 65535 ? 0 : e.PORTHOLE_PORT + 1),
      isPortSet: e.PORTHOLE_DEMO_PORT !== undefined,
      email: e.PORTHOLE_DEMO_EMAIL,
      password: new Secret(e.PORTHOLE_DEMO_PASSWORD),
      accessTokenTtlSeconds: e.PORTHOLE_DEMO_ACCESS_TOKEN_TTL_S,
      issuer: e.PORTHOLE_DEMO_ISSUER ?? null,
    }),
    egress: Object.freeze({
      allow: Object.freeze(e.PORTHOLE_EGRESS_ALLOW),
      upstream: e.PORTHOLE_EGRESS_UPSTREAM ?? null,
      loopback: Object.freeze(e.PORTHOLE_EGRESS_LOOPBACK),
    }),
  });
}

/** Documented variables, for docs/config.md and `porthole start --help`; a test keeps it in step with the schema. */
export const configVariables = Object.keys(envSchema.shape);
