// A porthole cluster on this one machine, made by the tests themselves (issue 12): a Linux bridge,
// and one network namespace per member with a veth pair on the bridge and its own address on a
// private /24 of its own (10.213.N.0/24) — PostgreSQL, the demo OpenID Connect provider, N porthole
// nodes and M porthole servers (or M all-in-one `porthole start` processes) — and haproxy in front
// of the servers on 127.0.0.1 of this host. Nothing listens anywhere else, and no namespace has a
// route off the bridge.
//
// Each member is a real process with its own data directory and its log in
// test-output/<name>/<member>.log (appended across restarts; tails printed by withLogs on failure).
// kill9 / sigterm / restart act on one member's process; partition / heal take its veth down and
// up on the bridge's side (its packets are dropped, as on a cut cable: connections hang, nothing
// is refused). stop() ends every session, stops every process, destroys what sandboxes are left
// and deletes the namespaces, the bridge and the directories; it is idempotent and also runs when
// the test process exits without it.
//
// Processes enter their namespace with `nsenter --net=/run/netns/<name>`, not `ip netns exec`,
// which also remounts /sys for the namespace and so hides the cgroup hierarchy from the driver.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, rmSync } from 'node:fs';
import { appendFile, chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { ApiClient } from '../../src/cli/api-client.js';
import { createLocalDriver } from '../../src/drivers/local/local-driver.js';
import { isTerminal } from '../../src/protocol/session.js';
import { loadConfig } from '../../src/server/config.js';
import { freeLoopbackPort } from './nginx.js';
import { testApiKey, testOutputDir } from './server.js';
import { testSandboxUids } from './sandbox-uids.js';
import { until } from './until.js';

const run = promisify(execFile);
const ip = (...args: string[]) => run('ip', args);

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const sidecar = fileURLToPath(new URL('./cluster-sidecar.js', import.meta.url));
const agentBundle = fileURLToPath(new URL('../../agent/porthole-agent.mjs', import.meta.url));

/** Ports inside the members' namespaces: each has a network of its own, so they are fixed. */
export const clusterPorts = { postgres: 5432, server: 8480, node: 8481, issuer: 8490 } as const;

export type MemberKind = 'postgres' | 'issuer' | 'server' | 'node';
/** `all-in-one`: `porthole start` servers (each its own node); `split`: `porthole server` and `porthole node`. */
export type ClusterRoles = 'all-in-one' | 'split';

export interface ClusterMember {
  /** postgres, issuer, server1, server2, node1, … */
  readonly name: string;
  readonly kind: MemberKind;
  readonly namespace: string;
  /** Its address on the bridge. */
  readonly address: string;
  /** Its veth's end on the bridge (what partition() takes down). */
  readonly veth: string;
  readonly port: number;
  /** http://<address>:<port> (servers and nodes; what the others reach it at). */
  readonly url: string;
  readonly dataDir: string;
  readonly logFile: string;
  /** Its sandbox uids (servers in all-in-one mode, nodes), as PORTHOLE_SANDBOX_UIDS takes them. */
  readonly sandboxUids: string | null;
  /** The process running now; null once it exited or was killed. */
  readonly pid: number | null;
  /** Only for servers: haproxy's frontend on 127.0.0.1 that sends everything to this server alone. */
  readonly proxyUrl: string | null;
}

export interface ClusterOptions {
  /** test-output/<name>/ gets the logs. */
  readonly name: string;
  readonly roles: ClusterRoles;
  readonly servers: number;
  /** Split roles only. */
  readonly nodes?: number;
  /** Environment of every porthole process (servers and nodes), over the harness's. */
  readonly env?: Record<string, string>;
  readonly serverEnv?: Record<string, string>;
  readonly nodeEnv?: Record<string, string>;
  /** Run the shared demo issuer (default true). */
  readonly demoIssuer?: boolean;
  /** Sandbox uids to split among the members that run sandboxes (default PORTHOLE_TEST_SANDBOX_UIDS). */
  readonly sandboxUids?: string;
  /** Names of namespaces and temp directories start with this (default `porthole-test-`: the leak check's). */
  readonly prefix?: string;
  /** The admin API key every server takes (PORTHOLE_API_KEY). */
  readonly apiKey?: string;
  /** Where the members' logs go (default test-output/<name>/). */
  readonly logDir?: string;
  /** The person's settings instead of the tests' (npm run cluster): info logs, the default warm pool. */
  readonly isForPeople?: boolean;
}

export interface TestCluster {
  readonly name: string;
  /** 10.213.N.0/24 */
  readonly subnet: string;
  readonly bridge: string;
  readonly postgres: ClusterMember;
  readonly databaseUrl: string;
  readonly issuer: ClusterMember | null;
  /** The demo issuer every member uses (PORTHOLE_DEMO_ISSUER); null without one. */
  readonly issuerUrl: string | null;
  readonly servers: readonly ClusterMember[];
  readonly nodes: readonly ClusterMember[];
  /** haproxy's balanced frontend (round robin over the servers): PORTHOLE_PUBLIC_URL. */
  readonly url: string;
  readonly apiKey: string;
  /** Admin API through haproxy. */
  readonly api: ApiClient;
  readonly clusterKey: string;
  readonly masterKey: string;
  /** Admin API through haproxy's frontend pinned to this server. */
  apiVia(server: ClusterMember): ApiClient;
  /** One SQL statement on the catalog, as the `postgres` superuser (to look, not to change). */
  query<R extends Record<string, unknown>>(text: string, values?: unknown[]): Promise<R[]>;
  /** The member at this bridge address (a PostgreSQL client's, say); undefined for none. */
  memberAt(address: string): ClusterMember | undefined;
  member(name: string): ClusterMember;
  sigterm(member: ClusterMember): Promise<void>;
  /** Starts a member whose process is not running (after kill9 or sigterm), on the same data directory. */
  start(member: ClusterMember): Promise<void>;
  /** sigterm (when running), then start. */
  restart(member: ClusterMember): Promise<void>;
  /** SIGKILL; for a node, as its host's loss: every process of its sandboxes too. */
  kill9(member: ClusterMember): Promise<void>;
  /** Its veth down on the bridge's side: nothing reaches it or leaves it. */
  partition(member: ClusterMember): Promise<void>;
  heal(member: ClusterMember): Promise<void>;
  /** A member's whole log so far. */
  logOf(member: ClusterMember): Promise<string>;
  /** The last `bytes` of every member's log, each under its name. */
  logTails(bytes?: number): Promise<string>;
  /** Wraps a test body: on failure the members' log tails are added to the error. */
  withLogs<A extends unknown[]>(body: (...args: A) => Promise<void>): (...args: A) => Promise<void>;
  /** Ends every session, stops every process, removes everything. Idempotent. */
  stop(): Promise<void>;
}

interface MemberState {
  name: string;
  kind: MemberKind;
  namespace: string;
  address: string;
  port: number;
  url: string;
  dataDir: string;
  logFile: string;
  sandboxUids: string | null;
  proxyUrl: string | null;
  hostVeth: string;
  child: ChildProcess | null;
  /** The forward of 127.0.0.1:<issuer port> to the issuer (servers and nodes). */
  sidecar: ChildProcess | null;
  env: Record<string, string>;
  command: string[];
}

/** A free 10.213.N.0/24: none of this host's addresses or routes in it. */
async function pickSubnet(): Promise<number> {
  const { stdout } = await run('ip', ['-4', '-o', 'addr']);
  const { stdout: routes } = await run('ip', ['-4', 'route']);
  const taken = `${stdout}\n${routes}`;
  for (let attempt = 0; attempt < 64; attempt++) {
    const n = randomBytes(1)[0]!;
    if (!taken.includes(`10.213.${n}.`)) return n;
  }
  throw new Error('no free 10.213.N.0/24 on this host');
}

/** `first-last` split into `count` equal blocks from its start. */
function splitUids(range: string, count: number): string[] {
  const match = /^(\d+)-(\d+)$/.exec(range);
  if (!match) throw new Error(`sandbox uids are not first-last: ${range}`);
  const [first, last] = [Number(match[1]), Number(match[2])];
  const size = Math.floor((last - first + 1) / Math.max(count, 1));
  if (size < 2) throw new Error(`sandbox uids ${range} are too few for ${count} members`);
  return Array.from({ length: count }, (_, i) => `${first + i * size}-${first + (i + 1) * size - 1}`);
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

const isRunning = (child: ChildProcess | null): child is ChildProcess => child !== null && child.exitCode === null && child.signalCode === null;

/** The end of a log, without the health checks haproxy and the harness make every half second. */
async function tail(path: string, bytes: number): Promise<string> {
  const text = (await readFile(path, 'utf8').catch(() => '(no log)'))
    .split('\n')
    .filter((line) => !/"path":"\/(healthz|readyz)"/.test(line))
    .join('\n');
  return text.length > bytes ? `…${text.slice(-bytes)}` : text;
}

/** SIGKILLs every process whose uid is in `first-last` (a node's sandbox uids), until none is left. */
async function killUidRange(range: string): Promise<void> {
  const [first, last] = range.split('-').map(Number) as [number, number];
  const deadline = Date.now() + 10_000;
  for (;;) {
    const pids: number[] = [];
    for (const name of await readdir('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      const status = await readFile(`/proc/${name}/status`, 'utf8').catch(() => '');
      const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1] ?? -1);
      if (uid >= first && uid <= last && !/^State:\s+Z/m.test(status)) pids.push(Number(name));
    }
    if (pids.length === 0) return;
    if (Date.now() > deadline) throw new Error(`processes of uids ${range} survive SIGKILL: ${pids.join(', ')}`);
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {}
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** GET url; the status, or the error's code. */
async function probe(url: string, timeoutMs = 1_000): Promise<number | string> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    await response.arrayBuffer();
    return response.status;
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause;
    return cause?.code ?? (error as Error).name;
  }
}

async function findPostgresBin(): Promise<string> {
  const root = '/usr/lib/postgresql';
  const versions = (await readdir(root).catch(() => [])).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  if (versions.length === 0)
    throw new Error(`PostgreSQL server binaries not found in ${root}/*/bin: install the Debian package \`postgresql\` (sh scripts/setup.sh --test)`);
  return join(root, versions[0]!, 'bin');
}

async function requireCommand(command: string, packageName: string): Promise<void> {
  await run('sh', ['-c', `command -v ${command}`]).catch(() => {
    throw new Error(`${command} not found: install the Debian package \`${packageName}\` (sh scripts/setup.sh --test)`);
  });
}

export async function startCluster(options: ClusterOptions): Promise<TestCluster> {
  if (process.getuid?.() !== 0) throw new Error('the test cluster needs root (network namespaces, veth pairs, a bridge)');
  await requireCommand('haproxy', 'haproxy');
  await requireCommand('nsenter', 'util-linux');
  await requireCommand('ip', 'iproute2');
  const pgBin = await findPostgresBin();
  const prefix = options.prefix ?? 'porthole-test-';
  const id = randomBytes(2).toString('hex');
  const subnetN = await pickSubnet();
  const subnet = `10.213.${subnetN}.0/24`;
  const addressOf = (host: number) => `10.213.${subnetN}.${host}`;
  // Link names (15 characters at most) cannot carry the prefix: `ptc…` for the tests (the test runner's
  // leak check looks for them), `phc…` for a person's cluster.
  const links = prefix === 'porthole-test-' ? `ptc${id}` : `phc${id}`;
  const bridge = `${links}b`;
  const root = await mkdtemp(join(tmpdir(), `${prefix}${id}-`));
  await chmod(root, 0o711); // sandbox uids traverse it to their data directories
  const outDir = options.logDir ?? testOutputDir(options.name);
  await mkdir(outDir, { recursive: true });
  const apiKey = options.apiKey ?? testApiKey;
  const clusterKey = randomBytes(32).toString('base64');
  const masterKey = randomBytes(32).toString('base64');
  const nodeCount = options.roles === 'split' ? (options.nodes ?? 3) : 0;
  const withIssuer = options.demoIssuer ?? true;
  const isForPeople = options.isForPeople ?? false;
  const members: MemberState[] = [];
  let haproxy: ChildProcess | null = null;
  let isStopped = false;
  let stopping: Promise<void> | null = null;

  const allProcesses = () => [...members.flatMap((m) => [m.child, m.sidecar]), haproxy].filter(isRunning);
  const namespaces = () => members.map((m) => m.namespace);
  // Last resort when the test process exits without stop(): nothing of the cluster outlives it.
  const onExit = () => {
    for (const child of allProcesses()) child.kill('SIGKILL');
    for (const namespace of namespaces()) {
      try {
        execFileSync('ip', ['netns', 'del', namespace], { stdio: 'ignore' });
      } catch {}
    }
    try {
      execFileSync('ip', ['link', 'del', bridge], { stdio: 'ignore' });
    } catch {}
    rmSync(root, { recursive: true, force: true });
  };
  process.on('exit', onExit);

  const log = (member: MemberState, line: string) => appendFile(member.logFile, `\n==== cluster ${new Date().toISOString()} ${member.name}: ${line}\n`);

  /** A namespace with its veth on the bridge and `address`; the member's state, not started. */
  const addMember = async (name: string, kind: MemberKind, host: number, port: number): Promise<MemberState> => {
    const index = members.length;
    const namespace = `${prefix}cl${id}-${name}`;
    const hostVeth = `${links}h${index}`;
    const inside = `${links}n${index}`;
    const address = addressOf(host);
    // Short (server1 → s1): a sandbox's unix socket paths under it must fit in 108 bytes.
    const dataDir = join(root, name.replace(/^server/, 's').replace(/^node/, 'n'));
    const member: MemberState = {
      name,
      kind,
      namespace,
      address,
      port,
      url: `http://${address}:${port}`,
      dataDir,
      logFile: join(outDir, `${name}.log`),
      sandboxUids: null,
      proxyUrl: null,
      hostVeth,
      child: null,
      sidecar: null,
      env: {},
      command: [],
    };
    members.push(member);
    await ip('netns', 'add', namespace);
    await ip('link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', inside, 'netns', namespace);
    await ip('link', 'set', hostVeth, 'master', bridge);
    await ip('link', 'set', hostVeth, 'up');
    await ip('-n', namespace, 'link', 'set', inside, 'name', 'eth0');
    await ip('-n', namespace, 'addr', 'add', `${address}/24`, 'dev', 'eth0');
    await ip('-n', namespace, 'link', 'set', 'eth0', 'up');
    await ip('-n', namespace, 'link', 'set', 'lo', 'up');
    await mkdir(dataDir, { recursive: true });
    await chmod(dataDir, 0o711);
    await writeFile(member.logFile, '', { flag: 'a' });
    return member;
  };

  /** Spawns `command` in the member's namespace, output appended to its log. */
  const spawnIn = (member: MemberState, command: string[], env: Record<string, string>, user?: { uid: number; gid: number }): ChildProcess => {
    const fd = openSync(member.logFile, 'a');
    try {
      const ids = user ? ['-S', String(user.uid), '-G', String(user.gid)] : [];
      return spawn('nsenter', [`--net=/run/netns/${member.namespace}`, ...ids, '--', ...command], {
        cwd: member.dataDir,
        env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...env },
        stdio: ['ignore', fd, fd],
        detached: true, // its own process group: a signal to the test's group does not reach it
      });
    } finally {
      closeSync(fd);
    }
  };

  const sidecarIn = async (member: MemberState, args: string[]): Promise<ChildProcess> => {
    const child = spawnIn(member, [process.execPath, sidecar, ...args, '--cluster', `${prefix}cl${id}`], {});
    const listening = await until(
      `${member.name}: the sidecar (${args.join(' ')}) listens`,
      async () => (child.exitCode !== null ? 'exited' : (await tail(member.logFile, 200)).includes('listening') ? 'listening' : 'not yet'),
      (s) => s !== 'not yet',
      15_000,
      { intervalMs: 50 },
    );
    if (listening === 'exited') throw new Error(`${member.name}: the sidecar exited (${child.exitCode}):\n${await tail(member.logFile, 2_000)}`);
    return child;
  };

  // PostgreSQL runs as the `postgres` user the package creates (it refuses root).
  const postgresUser = async () => {
    try {
      const [uid, gid] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])]);
      return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
    } catch (error) {
      throw new Error('no `postgres` user: install the Debian package `postgresql` (sh scripts/setup.sh --test)', { cause: error });
    }
  };

  const startProcess = async (member: MemberState): Promise<void> => {
    if (isRunning(member.child)) throw new Error(`${member.name} is running already (pid ${member.child.pid})`);
    await log(member, `start: ${member.command.join(' ')}`);
    const user = member.kind === 'postgres' ? await postgresUser() : undefined;
    const child = spawnIn(member, member.command, member.env, user);
    member.child = child;
    child.once('exit', (code, signal) => void log(member, `exited (${code ?? signal})`));
    const what =
      member.kind === 'postgres'
        ? `PostgreSQL on ${member.address}:${member.port}`
        : member.kind === 'issuer'
          ? `the demo issuer on ${member.address}:${member.port}`
          : `${member.name} answers ${member.url}/${options.roles === 'split' ? 'readyz' : 'healthz'}`;
    const ready = await until(
      what,
      async () => {
        if (!isRunning(child)) return 'exited';
        if (member.kind === 'postgres') {
          const client = new pg.Client({ host: member.address, port: member.port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 1_000 });
          client.on('error', () => {});
          return client.connect().then(
            () => client.end().then(() => 'up'),
            () => 'not yet',
          );
        }
        // Split roles: ready (a node registered with a fresh heartbeat, a server whose store answers); an all-in-one: live.
        const path = member.kind === 'issuer' ? '/.well-known/openid-configuration' : options.roles === 'split' ? '/readyz' : '/healthz';
        return (await probe(`${member.url}${path}`)) === 200 ? 'up' : 'not yet';
      },
      (s) => s !== 'not yet',
      60_000,
      { intervalMs: 100 },
    ).catch(async (error: Error) => {
      throw new Error(`${error.message}; ${member.name}'s log:\n${await tail(member.logFile, 4_000)}`, { cause: error });
    });
    if (ready === 'exited')
      throw new Error(
        `${member.name} exited while starting (${child.exitCode ?? child.signalCode}); its log (${member.logFile}):\n${await tail(member.logFile, 4_000)}`,
      );
  };

  const signalAndWait = async (member: MemberState, signal: NodeJS.Signals, timeoutMs: number): Promise<void> => {
    const child = member.child;
    if (!isRunning(child)) return;
    await log(member, signal);
    child.kill(signal);
    if (!(await exited(child, timeoutMs))) {
      await log(member, `still running ${timeoutMs} ms after ${signal}: SIGKILL`);
      child.kill('SIGKILL');
      await exited(child, 5_000);
    }
  };

  const stateOf = (member: ClusterMember): MemberState => {
    const state = members.find((m) => m.name === member.name);
    if (!state) throw new Error(`no member ${member.name} in this cluster`);
    return state;
  };

  const view = (m: MemberState): ClusterMember => ({
    name: m.name,
    kind: m.kind,
    namespace: m.namespace,
    address: m.address,
    veth: m.hostVeth,
    port: m.port,
    url: m.url,
    dataDir: m.dataDir,
    logFile: m.logFile,
    sandboxUids: m.sandboxUids,
    proxyUrl: m.proxyUrl,
    get pid() {
      return isRunning(m.child) ? (m.child.pid ?? null) : null;
    },
  });

  const portholes = () => members.filter((m) => m.kind === 'server' || m.kind === 'node');

  /** What is left of the sandboxes of a stopped member, destroyed as its own driver would. */
  const destroyLeftSandboxes = async (member: MemberState) => {
    if (!member.sandboxUids) return;
    const config = loadConfig({ ...member.env, PORTHOLE_DATA_DIR: member.dataDir });
    const driver = createLocalDriver({
      dataDir: member.dataDir,
      sandboxUids: config.sandboxUids,
      limits: {
        memoryBytes: config.sandboxLimits.memoryMiB * 2 ** 20,
        pids: config.sandboxLimits.pids,
        cpuWeight: config.sandboxLimits.cpuWeight,
      },
      agentBundle,
    });
    try {
      for (const sandbox of await driver.list()) await driver.destroy(sandbox.id);
    } finally {
      await driver.close();
    }
  };

  const stop = () =>
    (stopping ??= (async () => {
      const problems: string[] = [];
      const attempt = async (what: string, fn: () => Promise<unknown>) => {
        try {
          await fn();
        } catch (error) {
          problems.push(`${what}: ${(error as Error).message}`);
        }
      };
      // Sessions first, through a server that answers: their sandboxes go with them.
      const answering = members.filter((m) => m.kind === 'server' && isRunning(m.child));
      if (answering.length > 0) {
        await attempt('ending the sessions', async () => {
          const api = new ApiClient(answering[0]!.url, apiKey);
          const { sessions } = await api.listSessions();
          await Promise.all(sessions.filter((s) => !isTerminal(s.state)).map((s) => api.endSession(s.id).catch(() => {})));
        });
      }
      // Servers before nodes (nothing placed while nodes go), nodes and all-in-ones with a short drain.
      for (const kind of ['server', 'node'] as const)
        await Promise.all(members.filter((m) => m.kind === kind).map((m) => attempt(`stopping ${m.name}`, () => signalAndWait(m, 'SIGTERM', 15_000))));
      for (const member of portholes()) await attempt(`destroying ${member.name}'s sandboxes`, () => destroyLeftSandboxes(member));
      if (haproxy && isRunning(haproxy)) {
        haproxy.kill('SIGTERM');
        if (!(await exited(haproxy, 5_000))) haproxy.kill('SIGKILL');
      }
      for (const member of members) {
        if (member.sidecar && isRunning(member.sidecar)) {
          member.sidecar.kill('SIGKILL');
          await exited(member.sidecar, 5_000);
        }
      }
      for (const member of members.filter((m) => m.kind === 'issuer')) await attempt('stopping the issuer', () => signalAndWait(member, 'SIGTERM', 5_000));
      // PostgreSQL last: a fast shutdown (SIGINT), then an immediate one.
      for (const member of members.filter((m) => m.kind === 'postgres')) await attempt('stopping PostgreSQL', () => signalAndWait(member, 'SIGINT', 10_000));
      for (const namespace of namespaces()) await ip('netns', 'del', namespace).catch(() => {});
      for (const member of members) await ip('link', 'del', member.hostVeth).catch(() => {});
      await ip('link', 'del', bridge).catch(() => {});
      await rm(root, { recursive: true, force: true });
      isStopped = true;
      process.off('exit', onExit);
      if (problems.length > 0) throw new Error(`the cluster's stop: ${problems.join('; ')}`);
    })());

  try {
    await ip('link', 'add', bridge, 'type', 'bridge');
    await ip('addr', 'add', `${addressOf(1)}/24`, 'dev', bridge);
    await ip('link', 'set', bridge, 'up');

    // PostgreSQL, listening on its namespace's address only.
    const postgres = await addMember('postgres', 'postgres', 2, clusterPorts.postgres);
    const pgUser = await postgresUser();
    const pgData = join(postgres.dataDir, 'data');
    const sockets = join(postgres.dataDir, 'sockets');
    await mkdir(sockets);
    await chown(postgres.dataDir, pgUser.uid, pgUser.gid);
    await chown(sockets, pgUser.uid, pgUser.gid);
    await run(join(pgBin, 'initdb'), ['-D', pgData, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions'], {
      cwd: postgres.dataDir,
      ...pgUser,
    }).catch((error: { stderr?: string }) => {
      throw new Error(`initdb failed: ${error.stderr ?? ''}`, { cause: error });
    });
    await appendFile(join(pgData, 'pg_hba.conf'), `\n# the test cluster's bridge\nhost all all ${subnet} trust\n`);
    postgres.command = [
      join(pgBin, 'postgres'),
      ...['-D', pgData, '-h', postgres.address, '-p', String(postgres.port), '-k', sockets],
      ...['-c', 'fsync=off', '-c', 'full_page_writes=off', '-c', 'synchronous_commit=off', '-c', 'max_connections=200'],
    ];
    const issuer = withIssuer ? await addMember('issuer', 'issuer', 3, clusterPorts.issuer) : null;
    const issuerUrl = issuer ? `http://127.0.0.1:${clusterPorts.issuer}` : null;
    if (issuer) issuer.command = [process.execPath, sidecar, 'issuer', issuer.address, String(issuer.port), '--cluster', `${prefix}cl${id}`];
    await Promise.all([startProcess(postgres), ...(issuer ? [startProcess(issuer)] : [])]);
    const databaseUrl = `postgres://postgres@${postgres.address}:${postgres.port}/porthole`;
    const admin = new pg.Client({ host: postgres.address, port: postgres.port, user: 'postgres', database: 'postgres' });
    await admin.connect();
    await admin.query('CREATE DATABASE porthole').finally(() => admin.end());

    // haproxy's ports first: the servers' public URL and allowed origins name them.
    const balancedPort = await freeLoopbackPort();
    const url = `http://127.0.0.1:${balancedPort}`;
    const serverPorts: number[] = [];
    for (let i = 0; i < options.servers; i++) serverPorts.push(await freeLoopbackPort());

    const sandboxMembers = options.roles === 'split' ? nodeCount : options.servers;
    const uidBlocks = splitUids(options.sandboxUids ?? testSandboxUids, sandboxMembers);
    const common: Record<string, string> = {
      DATABASE_URL: databaseUrl,
      PORTHOLE_CLUSTER_KEY: clusterKey,
      PORTHOLE_MASTER_KEY: masterKey,
      PORTHOLE_API_KEY: apiKey,
      PORTHOLE_LOG_LEVEL: isForPeople ? 'info' : 'debug',
      PORTHOLE_PUBLIC_URL: url,
      PORTHOLE_ALLOWED_ORIGINS: serverPorts.map((p) => `http://127.0.0.1:${p}`).join(','),
      ...(issuerUrl ? { PORTHOLE_DEMO_ISSUER: issuerUrl } : { PORTHOLE_DEMO_PROVIDER: 'false' }),
      // No namespace has a route off the bridge: a sandbox's Chromium resolves no name (it would wait for DNS that never answers).
      PORTHOLE_SANDBOX_LOOPBACK_ONLY: 'true',
      PORTHOLE_REFRESH_PROVIDERS: 'demo',
      // As test/support/server.ts's servers: no desktops started ahead (each one more sandbox on a 2-core machine).
      ...(isForPeople ? {} : { PORTHOLE_WARM_POOL: '0' }),
      ...options.env,
    };
    const command = (role: string) => [process.execPath, '--enable-source-maps', cli, role];
    for (let i = 0; i < options.servers; i++) {
      const member = await addMember(`server${i + 1}`, 'server', 11 + i, clusterPorts.server);
      member.proxyUrl = `http://127.0.0.1:${serverPorts[i]}`;
      member.command = command(options.roles === 'split' ? 'server' : 'start');
      member.env = { ...common, PORTHOLE_HOST: member.address, PORTHOLE_PORT: String(member.port), PORTHOLE_DATA_DIR: member.dataDir, ...options.serverEnv };
      if (options.roles === 'all-in-one') {
        member.sandboxUids = uidBlocks[i]!;
        member.env.PORTHOLE_SANDBOX_UIDS = member.sandboxUids;
        member.env.PORTHOLE_NODE_ID = member.name;
      }
    }
    for (let i = 0; i < nodeCount; i++) {
      const member = await addMember(`node${i + 1}`, 'node', 21 + i, clusterPorts.node);
      member.sandboxUids = uidBlocks[i]!;
      member.command = command('node');
      member.env = {
        ...common,
        PORTHOLE_HOST: member.address,
        PORTHOLE_PORT: String(member.port),
        PORTHOLE_DATA_DIR: member.dataDir,
        PORTHOLE_NODE_ID: member.name,
        PORTHOLE_NODE_URL: member.url,
        PORTHOLE_SANDBOX_UIDS: member.sandboxUids,
        PORTHOLE_DRAIN_TIMEOUT_MS: '5000',
        ...options.nodeEnv,
      };
    }
    if (issuer) {
      await Promise.all(
        portholes().map(async (m) => {
          m.sidecar = await sidecarIn(m, ['forward', `127.0.0.1:${clusterPorts.issuer}`, `${issuer.address}:${issuer.port}`]);
        }),
      );
    }
    // Nodes first (servers place sessions on registered nodes), then the servers.
    await Promise.all(members.filter((m) => m.kind === 'node').map(startProcess));
    await Promise.all(members.filter((m) => m.kind === 'server').map(startProcess));

    // haproxy: the balanced frontend, and one per server that sends to it alone.
    const servers = members.filter((m) => m.kind === 'server');
    const backendLine = (m: MemberState) => `server ${m.name} ${m.address}:${m.port} check inter 500 fall 2 rise 1`;
    const haproxyConfig = `# written by test/support/cluster.ts
global
  maxconn 1024
defaults
  mode http
  timeout connect 2s
  timeout client 1h
  timeout server 1h
  timeout tunnel 1h
  retries 2
  option redispatch
  option httpchk GET /${options.roles === 'split' ? 'readyz' : 'healthz'}
frontend balanced
  bind 127.0.0.1:${balancedPort}
  default_backend servers
backend servers
  balance roundrobin
${servers.map((m) => `  ${backendLine(m)}`).join('\n')}
${servers
  .map(
    (m, i) => `frontend to_${m.name}
  bind 127.0.0.1:${serverPorts[i]}
  default_backend only_${m.name}
backend only_${m.name}
  ${backendLine(m)}`,
  )
  .join('\n')}
`;
    const haproxyFile = join(root, 'haproxy.cfg');
    await writeFile(haproxyFile, haproxyConfig);
    const haproxyLog = join(outDir, 'haproxy.log');
    const fd = openSync(haproxyLog, 'a');
    try {
      haproxy = spawn('haproxy', ['-db', '-f', haproxyFile], { stdio: ['ignore', fd, fd], detached: true });
    } finally {
      closeSync(fd);
    }
    const started = haproxy;
    await until(
      `haproxy in front of ${servers.map((m) => m.name).join(', ')} on ${url}`,
      async () => (isRunning(started) ? await probe(`${url}/healthz`) : 'exited'),
      (s) => s === 200 || s === 'exited',
      15_000,
      { intervalMs: 100 },
    );
    if (!isRunning(started)) throw new Error(`haproxy exited while starting:\n${await tail(haproxyLog, 2_000)}`);

    const cluster: TestCluster = {
      name: options.name,
      subnet,
      bridge,
      postgres: view(postgres),
      databaseUrl,
      issuer: issuer ? view(issuer) : null,
      issuerUrl,
      servers: servers.map(view),
      nodes: members.filter((m) => m.kind === 'node').map(view),
      url,
      apiKey,
      api: new ApiClient(url, apiKey),
      clusterKey,
      masterKey,
      apiVia: (server) => new ApiClient(stateOf(server).proxyUrl ?? stateOf(server).url, apiKey),
      member: (name) => view(stateOf({ name } as ClusterMember)),
      async query(text, values = []) {
        const client = new pg.Client({ host: postgres.address, port: postgres.port, user: 'postgres', database: 'porthole', connectionTimeoutMillis: 2_000 });
        client.on('error', () => {});
        await client.connect();
        try {
          return (await client.query(text, values)).rows;
        } finally {
          await client.end().catch(() => {});
        }
      },
      memberAt(address) {
        const found = members.find((m) => m.address === address);
        return found ? view(found) : undefined;
      },
      async kill9(member) {
        const state = stateOf(member);
        if (isRunning(state.child)) {
          await log(state, 'SIGKILL');
          state.child.kill('SIGKILL');
          await exited(state.child, 5_000);
        }
        // A node's loss is its host's: its desktops die with it (the local driver's sandboxes would
        // otherwise run on, detached, until their own lease). Every process of its uid range.
        if (state.kind === 'node' && state.sandboxUids) await killUidRange(state.sandboxUids);
      },
      sigterm: (member) => signalAndWait(stateOf(member), member.kind === 'postgres' ? 'SIGINT' : 'SIGTERM', 30_000),
      start: (member) => startProcess(stateOf(member)),
      async restart(member) {
        const state = stateOf(member);
        await signalAndWait(state, member.kind === 'postgres' ? 'SIGINT' : 'SIGTERM', 30_000);
        await startProcess(state);
      },
      async partition(member) {
        const state = stateOf(member);
        await log(state, 'partitioned (veth down)');
        await ip('link', 'set', state.hostVeth, 'down');
      },
      async heal(member) {
        const state = stateOf(member);
        await log(state, 'healed (veth up)');
        await ip('link', 'set', state.hostVeth, 'up');
      },
      logOf: (member) => readFile(stateOf(member).logFile, 'utf8'),
      async logTails(bytes = 3_000) {
        const parts = await Promise.all(members.map(async (m) => `---- ${m.name} (${m.logFile}):\n${await tail(m.logFile, bytes)}`));
        parts.push(`---- haproxy (${haproxyLog}):\n${await tail(haproxyLog, 1_000)}`);
        return parts.join('\n');
      },
      withLogs(body) {
        return async (...args) => {
          try {
            await body(...args);
          } catch (error) {
            if (error instanceof Error) error.message += `\n\nthe cluster's logs (tails):\n${await cluster.logTails()}`;
            throw error;
          }
        };
      },
      stop,
    };
    if (isStopped) throw new Error('stopped while starting');
    return cluster;
  } catch (error) {
    const tails = await Promise.all(members.map(async (m) => `---- ${m.name}:\n${await tail(m.logFile, 2_000)}`));
    await stop().catch(() => {});
    if (error instanceof Error) error.message += `\n\nthe cluster's logs (tails):\n${tails.join('\n')}`;
    throw error;
  }
}
