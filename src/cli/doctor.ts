import { execFile, type ExecFileException } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access, lstat, open, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { release } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { version } from '../protocol/version.js';
import { detectCgroups, formatBytes } from '../drivers/cgroups/cgroups.js';
import { probeRunsc, type RunscProbe } from '../drivers/gvisor/probe.js';
import { longestSocketPath, maxUnixPathBytes } from '../drivers/local-layout.js';
import { ConfigError, loadConfig, type Config } from '../server/config.js';
import { auditDataDir } from '../server/data-dir.js';
import { ApiClient } from './api-client.js';
import { readSandboxPackages, sandboxPackagesFile, type SandboxPackage } from './sandbox-packages.js';

// `porthole doctor` checks the host: what to install or fix before a sandbox can start. Each check
// says what to do, not only what is wrong. (A session's diagnosis prints through diagnosis-format.ts.)

export type CheckStatus = 'ok' | 'failed' | 'info';

export interface DoctorCheck {
  readonly name: string;
  /** `failed` makes `porthole doctor` exit 1; `info` is said but decides nothing (e.g. /dev/kvm). */
  readonly status: CheckStatus;
  readonly detail: string;
  /** What to run or change; null when there is nothing to do. */
  readonly fix: string | null;
}

export interface DoctorReport {
  readonly ok: boolean;
  readonly checks: DoctorCheck[];
}

const agentBundle = fileURLToPath(new URL('../../agent/porthole-agent.mjs', import.meta.url));
/** The agent runs on the host's node, seen through the sandbox's read-only /usr. */
const sandboxNode = '/usr/bin/node';
const minNodeMajor = 20;
const probeTimeoutMs = 3_000;
const isRoot = process.getuid?.() === 0;

const ok = (name: string, detail: string): DoctorCheck => ({ name, status: 'ok', detail, fix: null });
const failed = (name: string, detail: string, fix: string | null): DoctorCheck => ({ name, status: 'failed', detail, fix });
const info = (name: string, detail: string, fix: string | null = null): DoctorCheck => ({ name, status: 'info', detail, fix });

interface RunResult {
  /** Exit status, or null when it could not start (spawnError) or was killed. */
  readonly exitCode: number | null;
  readonly spawnError: string | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command with a fixed environment, optionally as the sandbox uid; never throws. */
function run(file: string, args: string[], options: { asSandbox?: Config; timeoutMs?: number } = {}): Promise<RunResult> {
  const ids = options.asSandbox && isRoot ? { uid: options.asSandbox.sandboxUids.first, gid: options.asSandbox.sandboxUids.first } : {};
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { cwd: '/', env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' }, timeout: options.timeoutMs ?? 10_000, ...ids },
      (error: ExecFileException | null, stdout, stderr) => {
        if (!error) return resolve({ exitCode: 0, spawnError: null, stdout, stderr });
        const spawnError = typeof error.code === 'string' ? error.code : null;
        const exitCode = typeof error.code === 'number' ? error.code : null;
        resolve({ exitCode, spawnError: spawnError ?? (error.killed ? 'ETIMEDOUT' : null), stdout, stderr });
      },
    );
  });
}

const firstLine = (text: string) => text.trim().split('\n')[0] ?? '';

/** The Debian packages of scripts/sandbox-packages.txt, the list scripts/setup.sh installs. */
async function checkPackages(): Promise<DoctorCheck[]> {
  let requiredPackages: SandboxPackage[];
  try {
    requiredPackages = await readSandboxPackages();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    return [
      failed('packages', `cannot read the package list ${sandboxPackagesFile} (${code})`, 'run porthole from its checkout, where scripts/ sits beside dist/'),
    ];
  }
  const names = requiredPackages.map(({ name }) => name);
  // One call for all; for a package dpkg does not know it exits 1 but still lists the others.
  // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format syntax, not a template
  const result = await run('dpkg-query', ['-W', '-f=${Package}\t${Status}\t${Version}\n', ...names]);
  if (result.spawnError) {
    return requiredPackages.map(({ name, why }) =>
      failed(`package ${name}`, `cannot ask dpkg-query (${result.spawnError}): not a Debian system?`, `install the equivalent of Debian's ${name} (${why})`),
    );
  }
  const installed = new Map<string, string>();
  for (const line of result.stdout.split('\n')) {
    const [name, status, pkgVersion] = line.split('\t');
    if (name && status === 'install ok installed') installed.set(name, pkgVersion ?? '');
  }
  return requiredPackages.map(({ name, why }) => {
    const found = installed.get(name);
    return found !== undefined ? ok(`package ${name}`, `${found} (${why})`) : failed(`package ${name}`, `not installed (${why})`, `apt-get install -y ${name}`);
  });
}

async function checkSandboxNode(): Promise<DoctorCheck> {
  const name = 'node for the agent';
  const result = await run(sandboxNode, ['--version']);
  const fix = `install Node.js ${minNodeMajor}+ as ${sandboxNode} (the agent runs on it inside the sandbox, where only /usr is mounted)`;
  if (result.exitCode !== 0) return failed(name, `${sandboxNode} does not run (${result.spawnError ?? `exit ${result.exitCode}`})`, fix);
  const found = result.stdout.trim();
  const major = Number(/^v(\d+)\./.exec(found)?.[1] ?? 0);
  return major >= minNodeMajor ? ok(name, `${sandboxNode} ${found}`) : failed(name, `${sandboxNode} is ${found}; the agent needs ${minNodeMajor}+`, fix);
}

async function checkAgentBundle(_config: Config | null): Promise<DoctorCheck> {
  const name = 'agent bundle';
  const fix = 'node scripts/build.mjs';
  let head: string;
  try {
    const file = await open(agentBundle, 'r');
    try {
      const buffer = Buffer.alloc(200);
      const { bytesRead } = await file.read(buffer, 0, buffer.length, 0);
      head = buffer.subarray(0, bytesRead).toString('utf8');
    } finally {
      await file.close();
    }
  } catch (error) {
    return failed(name, `${agentBundle}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, fix);
  }
  // The build writes `// porthole agent "<version>"` on the first line; readiness compares the versions.
  const built = /^\/\/ porthole agent "([^"]+)"/.exec(head)?.[1] ?? null;
  if (built !== version) {
    return failed(
      name,
      `${agentBundle} was built as ${built ?? 'an unknown version'}, this porthole is ${version}: sessions would fail with AGENT_VERSION_MISMATCH`,
      fix,
    );
  }
  return ok(name, `version ${built}`);
}

async function checkUserNamespace(config: Config): Promise<DoctorCheck> {
  const name = 'user namespaces';
  const who = isRoot ? `uid ${config.sandboxUids.first}` : `uid ${process.getuid?.()} (this user: porthole is not root)`;
  const result = await run('bwrap', ['--unshare-user', '--unshare-pid', '--ro-bind', '/', '/', 'true'], { asSandbox: config });
  if (result.exitCode === 0) return ok(name, `bwrap creates a user and a pid namespace as ${who}`);
  if (result.spawnError === 'ENOENT') return failed(name, 'bwrap is not installed', 'apt-get install -y bubblewrap');
  const said = firstLine(result.stderr) || result.spawnError || `exit ${result.exitCode}`;
  return failed(
    name,
    `bwrap as ${who} cannot create a user namespace: ${said}`,
    'allow unprivileged user namespaces: sysctl -w user.max_user_namespaces=15000 (and kernel.unprivileged_userns_clone=1 where it exists, ' +
      'kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu); in a container, run it with a seccomp profile that allows clone(CLONE_NEWUSER)',
  );
}

/** Which per-sandbox limits (PORTHOLE_SANDBOX_MEMORY_MIB, _PIDS, _CPU_WEIGHT) this host's cgroups let porthole enforce. */
async function checkResourceLimits(config: Config | null): Promise<DoctorCheck> {
  const name = 'resource limits';
  const host = await detectCgroups();
  const limits = config?.sandboxLimits;
  const wanted = limits ? `${formatBytes(limits.memoryMiB * 2 ** 20)} of memory and ${limits.pids} tasks per sandbox` : 'per-sandbox memory and task limits';
  if (host.enforceable.memory && host.enforceable.pids) return ok(name, `${wanted} enforced; ${host.why}`);
  const fix = !isRoot
    ? 'run porthole as root: it then puts each sandbox in a cgroup of its own'
    : host.version === 'v2' || host.why.startsWith('cgroup v2')
      ? 'run porthole as a systemd service with Delegate=yes (and DelegateSubgroup=porthole-server on systemd ≥ 254); run from a login shell, this check sees the shell’s cgroup'
      : 'give porthole a writable cgroup filesystem (in a container: its own cgroup namespace with /sys/fs/cgroup mounted read-write)';
  const missing = [host.enforceable.memory ? null : 'memory', host.enforceable.pids ? null : 'tasks'].filter(Boolean).join(' and ');
  return info(name, `${wanted} wanted, ${missing} not enforced (one sandbox can exhaust the host); ${host.why}`, fix);
}

/** /dev/kvm is there as a device (usable or not: doctor runs as root where it matters). */
async function hasKvmDevice(): Promise<boolean> {
  return (await stat('/dev/kvm').catch(() => null))?.isCharacterDevice() ?? false;
}

async function checkKvm(): Promise<DoctorCheck> {
  const name = '/dev/kvm';
  const why = 'used only by the gvisor driver with PORTHOLE_GVISOR_PLATFORM=kvm; the local driver does not use it';
  const found = await stat('/dev/kvm').catch(() => null);
  if (!found) return info(name, `absent (${why})`);
  if (!found.isCharacterDevice()) return info(name, `exists but is not a device (${why})`);
  const usable = await access('/dev/kvm', fsConstants.R_OK | fsConstants.W_OK).then(
    () => true,
    () => false,
  );
  return info(
    name,
    `present, ${usable ? 'usable' : 'not usable'} by this user (${why})`,
    usable ? null : 'add this user to the kvm group (for the kvm driver)',
  );
}

/**
 * The ptrace probe may take a while on a loaded host (node starting under ptrace); the kvm probe is
 * short: where gVisor's KVM platform works, a sandbox starts on it faster than on ptrace, and where
 * it does not (a nested /dev/kvm), its Sentry spins without ever running the container.
 */
const ptraceProbeTimeoutMs = 20_000;
const kvmProbeTimeoutMs = 5_000;
const runscFix = 'apt-get install -y runsc (scripts/setup.sh installs it when PORTHOLE_DRIVER=gvisor)';
const runscDebugFix = 'run a sandbox by hand to see runsc say why: runsc --platform=ptrace --network=none do /bin/true (as root)';

const seconds = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;

/** One probe's outcome in words: `ran in 1.2 s (runsc create 0.3 s)`, `did not start within 5 s (at runsc create)`. */
function describeProbe(probe: RunscProbe): string {
  if (probe.outcome === 'ran') return `ran in ${Math.round(probe.ms)} ms (runsc create ${Math.round(probe.createMs)} ms)`;
  if (probe.outcome === 'timed out') return `did not start within ${seconds(probe.afterMs)} (still at ${probe.step}; killed and deleted)`;
  return `failed at ${probe.step}: ${probe.reason}`;
}

/** probeRunsc, with a cleanup that failed turned into the reason (something of the probe is left running). */
function probe(platform: 'ptrace' | 'kvm', config: Config, timeoutMs: number): Promise<RunscProbe> {
  return probeRunsc({ platform, uid: config.sandboxUids.first, timeoutMs }).catch(
    (error: unknown): RunscProbe => ({ outcome: 'failed', step: 'cleanup', reason: `${(error as Error).message}: kill them by hand` }),
  );
}

/**
 * gVisor's runsc: whether it is installed (always said), and for the gvisor driver whether it starts
 * a sandbox here — a probe sandbox with the driver's flags, whose kernel must be gVisor's — and on
 * which platform (PORTHOLE_GVISOR_PLATFORM) and why: kvm is tried where /dev/kvm exists. A problem
 * fails doctor only when the driver is gvisor.
 */
async function checkGvisor(config: Config, isPlatformDefault: boolean): Promise<DoctorCheck[]> {
  const name = 'runsc';
  const platformName = 'gvisor platform';
  const isGvisor = config.driver === 'gvisor';
  const problem = isGvisor ? failed : info;
  const notChecked = (why: string) => (isGvisor ? [info(platformName, `not checked: ${why}`)] : []);
  const result = await run('runsc', ['--version']);
  if (result.spawnError === 'ENOENT')
    return [
      problem(name, `not installed (gVisor's runtime, ${isGvisor ? 'which PORTHOLE_DRIVER=gvisor needs' : 'needed only by PORTHOLE_DRIVER=gvisor'})`, runscFix),
      ...notChecked('runsc is not installed'),
    ];
  if (result.exitCode !== 0)
    return [
      problem(name, `runsc --version does not run (${firstLine(result.stderr) || result.spawnError || `exit ${result.exitCode}`})`, runscFix),
      ...notChecked('runsc does not run'),
    ];
  const runscVersion = `runsc ${/runsc version (\S+)/.exec(result.stdout)?.[1] ?? firstLine(result.stdout)}`;
  if (!isGvisor) return [info(name, `${runscVersion} installed; not tried: the driver is ${config.driver} (PORTHOLE_DRIVER=gvisor would use it)`)];
  if (!isRoot)
    return [
      failed(
        name,
        `${runscVersion} installed, but the gvisor driver needs root (runsc creates the sandbox's namespaces, and porthole its cgroup); porthole runs as uid ${process.getuid?.()}`,
        'run porthole as root, or PORTHOLE_DRIVER=local',
      ),
      ...notChecked('not root'),
    ];

  const hostKernel = release();
  const ptrace = await probe('ptrace', config, ptraceProbeTimeoutMs);
  const what = `a probe sandbox (ptrace, --network=none, read-only root with /usr, node as uid ${config.sandboxUids.first})`;
  let runscCheck: DoctorCheck;
  if (ptrace.outcome !== 'ran') runscCheck = failed(name, `${runscVersion}: ${what} ${describeProbe(ptrace)}`, runscDebugFix);
  else if (ptrace.kernel === hostKernel)
    runscCheck = failed(name, `${runscVersion}: ${what} ran, but saw the host's kernel ${hostKernel}: not gVisor's`, runscDebugFix);
  else runscCheck = ok(name, `${runscVersion}: ${what} ${describeProbe(ptrace)}; kernel ${ptrace.kernel} inside, gVisor's (the host's is ${hostKernel})`);

  const kvm = (await hasKvmDevice()) ? await probe('kvm', config, kvmProbeTimeoutMs) : null;
  const kvmSaid =
    kvm === null
      ? 'kvm is not possible: no /dev/kvm'
      : kvm.outcome === 'ran'
        ? `kvm tried (/dev/kvm exists): its probe sandbox ${describeProbe(kvm)}`
        : `kvm tried (/dev/kvm exists): its probe sandbox ${describeProbe(kvm)}${kvm.outcome === 'timed out' ? ' — gVisor’s KVM platform hangs on some nested /dev/kvm' : ''}`;
  const configured = `PORTHOLE_GVISOR_PLATFORM=${config.gvisorPlatform}${isPlatformDefault ? ', the default' : ''}`;
  let platformCheck: DoctorCheck;
  if (config.gvisorPlatform === 'ptrace') {
    const verdict = kvm?.outcome === 'ran' ? '; PORTHOLE_GVISOR_PLATFORM=kvm may run sandboxes faster' : ', so ptrace';
    platformCheck =
      ptrace.outcome === 'ran'
        ? ok(platformName, `ptrace (${configured}), which works on any host; ${kvmSaid}${verdict}`)
        : failed(platformName, `ptrace (${configured}), but its probe sandbox ${describeProbe(ptrace)}; ${kvmSaid}`, runscDebugFix);
  } else {
    platformCheck =
      kvm?.outcome === 'ran'
        ? ok(platformName, `kvm (${configured}): its probe sandbox ${describeProbe(kvm)}`)
        : failed(platformName, `kvm (${configured}), but ${kvmSaid}`, 'set PORTHOLE_GVISOR_PLATFORM=ptrace, which works on any host');
  }
  return [runscCheck, platformCheck];
}

/** The path itself when it exists, else its nearest existing ancestor. */
async function nearestExisting(path: string): Promise<{ path: string; exists: boolean }> {
  for (let at = path; ; at = dirname(at)) {
    if (
      await lstat(at).then(
        () => true,
        () => false,
      )
    )
      return { path: at, exists: at === path };
    if (at === dirname(at)) return { path: at, exists: false };
  }
}

async function checkDataDir(config: Config): Promise<DoctorCheck> {
  const name = 'data directory';
  const dir = config.dataDir;
  const found = await nearestExisting(dir);
  const writable = await access(found.path, fsConstants.W_OK | fsConstants.X_OK).then(
    () => true,
    () => false,
  );
  if (found.exists) {
    if (!(await stat(dir)).isDirectory()) return failed(name, `${dir} exists but is not a directory`, 'set PORTHOLE_DATA_DIR to a directory');
    return writable
      ? ok(name, `${dir} exists and is writable`)
      : failed(name, `${dir} is not writable by this user`, `chown it to the user porthole runs as, or set PORTHOLE_DATA_DIR`);
  }
  return writable
    ? ok(name, `${dir} does not exist yet; the first start creates it (mode 0700) in ${found.path}`)
    : failed(
        name,
        `${dir} does not exist and ${found.path} is not writable by this user`,
        `mkdir -p ${dir} && chmod 700 ${dir} (as a user that may), or set PORTHOLE_DATA_DIR`,
      );
}

/** What another local user could read or change in the data directory; data-dir.ts says what is allowed. */
async function checkDataDirModes(config: Config): Promise<DoctorCheck> {
  const name = 'data directory modes';
  const dir = config.dataDir;
  const problems = await auditDataDir(dir);
  if (problems.length === 0) return ok(name, `nothing in ${dir} is open to group or others (pglite, keyring and signing key: owner only)`);
  const shown = problems
    .slice(0, 5)
    .map((p) => `${p.path} ${p.mode} (${p.problem})`)
    .join('; ');
  const secrets = [...new Set(problems.filter((p) => p.problem === 'group/other access to a secret').map((p) => join(dir, p.path.split('/')[0]!)))];
  const writable = problems.filter((p) => p.problem === 'group/other write').map((p) => join(dir, p.path));
  const commands = [
    ...(problems.some((p) => p.path === '.') ? [`chmod 700 ${dir}`] : []),
    ...(secrets.length > 0 ? [`chmod -R go-rwx ${secrets.join(' ')}`] : []),
    ...(writable.length > 0 ? [`chmod go-w ${writable.slice(0, 5).join(' ')}${writable.length > 5 ? ' …' : ''}`] : []),
  ];
  return failed(
    name,
    `${problems.length} open to other users: ${shown}${problems.length > 5 ? `; and ${problems.length - 5} more` : ''}`,
    `${commands.join(' && ')} (porthole start tightens the directory and pglite/ itself); what was readable may have been read: rotate the keys if in doubt`,
  );
}

/** The longest unix socket path the local driver gives a sandbox in this data directory (local-layout.ts). */
function checkSocketPaths(config: Config): DoctorCheck {
  const name = 'socket paths';
  const { bytes, fits } = longestSocketPath(config.dataDir);
  return fits
    ? ok(name, `${bytes} bytes at most (a unix socket path may have ${maxUnixPathBytes})`)
    : failed(
        name,
        `${bytes} bytes, more than the ${maxUnixPathBytes} a unix socket path may have: sandboxes would fail to start`,
        'choose a shorter PORTHOLE_DATA_DIR',
      );
}

async function checkSigningKey(config: Config): Promise<DoctorCheck> {
  const name = 'signing key';
  const path = join(config.dataDir, 'signing.key');
  const found = await lstat(path).catch((error: NodeJS.ErrnoException) => (error.code === 'ENOENT' ? null : error));
  if (found === null) return ok(name, `${path} not created yet; the first start creates it (mode 0600)`);
  if (found instanceof Error) return failed(name, `${path}: ${found.code ?? found.message}`, `make ${config.dataDir} readable by the user porthole runs as`);
  if (!found.isFile()) return failed(name, `${path} is not a regular file`, `remove it; the next start creates a new key (open viewer links stop working)`);
  const mode = found.mode & 0o777;
  if (mode !== 0o600) return failed(name, `${path} has mode 0${mode.toString(8)}: anyone who reads it can sign viewer tickets`, `chmod 600 ${path}`);
  if (found.size !== 32)
    return failed(name, `${path} is ${found.size} bytes, not 32`, `remove it; the next start creates a new key (open viewer links stop working)`);
  return ok(name, `${path}: mode 0600, 32 bytes`);
}

async function getJson(url: string, apiKey: string | null): Promise<{ status: number; json: unknown }> {
  const response = await fetch(url, { headers: apiKey ? { authorization: `Bearer ${apiKey}` } : {}, signal: AbortSignal.timeout(probeTimeoutMs) });
  const text = await response.text();
  let json: unknown = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  return { status: response.status, json };
}

/** The version a porthole at `baseUrl` reports on /healthz, or null when none answers there. */
async function portholeAt(baseUrl: string): Promise<string | null> {
  try {
    const { status, json } = await getJson(`${baseUrl}/healthz`, null);
    const body = json as { ok?: unknown; version?: unknown } | null;
    return status === 200 && body?.ok === true && typeof body.version === 'string' ? body.version : null;
  } catch {
    return null;
  }
}

/**
 * The store is checked through a running server: only src/server/main.ts may open a concrete store
 * (the lint rule), and a second process must not open the PGlite directory a server holds.
 */
async function checkStore(config: Config, serverUrl: string): Promise<DoctorCheck> {
  const name = 'store';
  const which = config.databaseUrl ? 'PostgreSQL (DATABASE_URL)' : `PGlite in ${join(config.dataDir, 'pglite')}`;
  const running = await portholeAt(serverUrl);
  if (running === null) return info(name, `no porthole answers at ${serverUrl}; store not checked (${which}; porthole start opens and migrates it)`);
  const apiKey = config.apiKey?.reveal() ?? null;
  if (!apiKey)
    return info(
      name,
      `porthole ${running} answers at ${serverUrl}; store not checked without an API key`,
      'set PORTHOLE_API_KEY so doctor can ask the server to read its store',
    );
  try {
    const { status, json } = await getJson(`${serverUrl}/v1/sessions?limit=1`, apiKey);
    const code = (json as { error?: { code?: string } } | null)?.error?.code ?? null;
    if (status === 200) return ok(name, `porthole ${running} at ${serverUrl} reads its store`);
    if (code === 'API_KEY_INVALID' || code === 'UNAUTHENTICATED')
      return info(name, `porthole ${running} at ${serverUrl} does not accept this API key; store not checked`, 'set PORTHOLE_API_KEY to a key of that server');
    return failed(
      name,
      `porthole ${running} at ${serverUrl} cannot read its store: ${status} ${code ?? ''}`.trim(),
      config.databaseUrl ? 'check that the PostgreSQL server of DATABASE_URL answers; the server log has the cause' : 'the server log has the cause',
    );
  } catch (error) {
    return failed(name, `porthole ${running} at ${serverUrl} stopped answering: ${(error as Error).message}`, 'the server log has the cause');
  }
}

async function checkPort(config: Config): Promise<DoctorCheck> {
  const name = 'port';
  if (config.port === 0) return ok(name, 'PORTHOLE_PORT=0: each start picks a free port');
  const where = `${config.host}:${config.port}`;
  const bindError = await new Promise<string | null>((resolve) => {
    const server = createServer();
    server.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
    server.listen({ host: config.host, port: config.port, exclusive: true }, () => server.close(() => resolve(null)));
  });
  if (bindError === null) return ok(name, `${where} is free`);
  if (bindError === 'EADDRINUSE') {
    const host = config.host.includes(':') ? `[${config.host}]` : config.host === '0.0.0.0' ? '127.0.0.1' : config.host;
    const running = await portholeAt(`http://${host}:${config.port}`);
    if (running === null)
      return failed(
        name,
        `${where} is in use by another program`,
        `choose another PORTHOLE_PORT, or stop what listens there (ss -ltnp 'sport = :${config.port}')`,
      );
    if (running !== version)
      return info(name, `${where} is in use by porthole ${running} (running), not this version ${version}`, 'restart it to run this version');
    return ok(name, `${where} is in use by porthole ${running} (running)`);
  }
  if (bindError === 'EACCES') return failed(name, `${where}: EACCES (ports below 1024 need privileges)`, 'choose PORTHOLE_PORT ≥ 1024');
  if (bindError === 'EADDRNOTAVAIL')
    return failed(
      name,
      `${where}: EADDRNOTAVAIL (PORTHOLE_HOST is not an address of this machine)`,
      'set PORTHOLE_HOST to 127.0.0.1 or an address of this machine',
    );
  return failed(name, `${where}: ${bindError}`, 'choose another PORTHOLE_HOST/PORTHOLE_PORT');
}

/** Every check, in order. Reads the configuration through loadConfig, like the server would. */
export async function runDoctor(env: Record<string, string | undefined>): Promise<DoctorReport> {
  const checks: DoctorCheck[] = [];
  let config: Config | null = null;
  try {
    config = loadConfig(env);
    checks.push(
      ok('configuration', `driver ${config.driver}, store ${config.databaseUrl ? 'PostgreSQL (DATABASE_URL)' : 'PGlite'}, data in ${config.dataDir}`),
    );
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    checks.push(failed('configuration', error.problems.join('; '), 'fix the PORTHOLE_* variables named (docs/config.md)'));
  }
  checks.push(...(await checkPackages()));
  checks.push(await checkSandboxNode());
  checks.push(await checkAgentBundle(config));
  checks.push(await checkResourceLimits(config));
  if (config) {
    // PORTHOLE_URL is where the command line finds the server, as for the sessions commands.
    const serverUrl = ApiClient.fromEnv(env).baseUrl;
    checks.push(await checkUserNamespace(config));
    checks.push(await checkKvm());
    checks.push(...(await checkGvisor(config, env.PORTHOLE_GVISOR_PLATFORM === undefined)));
    checks.push(await checkDataDir(config));
    checks.push(await checkDataDirModes(config));
    checks.push(checkSocketPaths(config));
    checks.push(await checkSigningKey(config));
    checks.push(await checkStore(config, serverUrl));
    checks.push(await checkPort(config));
  } else {
    for (const name of [
      'user namespaces',
      '/dev/kvm',
      'runsc',
      'data directory',
      'data directory modes',
      'data dir for the sandbox',
      'socket paths',
      'signing key',
      'store',
      'port',
    ]) {
      checks.push(info(name, 'not checked: the configuration is invalid'));
    }
  }
  return { ok: checks.every((c) => c.status !== 'failed'), checks };
}

const marks: Record<CheckStatus, string> = { ok: '✔', failed: '✘', info: 'ℹ' };

export function formatDoctor(report: DoctorReport): string[] {
  const width = Math.max(...report.checks.map((c) => c.name.length));
  const lines = report.checks.map((c) => `${marks[c.status]} ${c.name.padEnd(width)}  ${c.detail}${c.fix ? `\n  ${' '.repeat(width)}  → ${c.fix}` : ''}`);
  const failedCount = report.checks.filter((c) => c.status === 'failed').length;
  lines.push(
    '',
    report.ok
      ? `porthole ${version}: this host can run sandboxes.`
      : `porthole ${version}: ${failedCount} check${failedCount === 1 ? '' : 's'} failed; fix ${failedCount === 1 ? 'it' : 'them'} as shown (→).`,
  );
  return lines;
}

/** `porthole doctor [--json]`: prints every check; returns the exit status (1 when a required check failed). */
export async function doctorCommand(options: { json: boolean }, env: Record<string, string | undefined>, print: (line: string) => void): Promise<number> {
  const report = await runDoctor(env);
  print(options.json ? JSON.stringify(report, null, 2) : formatDoctor(report).join('\n'));
  return report.ok ? 0 : 1;
}
