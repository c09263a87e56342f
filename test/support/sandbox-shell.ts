import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Runsc, gvisorPlatforms, type GvisorPlatform } from '../../src/drivers/gvisor/runsc.js';
import { sandboxesDir } from '../../src/drivers/local-layout.js';
import { readRecord } from '../../src/drivers/local/sandbox-record.js';
import { inside, insideUid } from '../../src/drivers/sandbox-inside.js';
import { until } from './until.js';

// A terminal in a real sandbox, for the security tests: a process that is the person at the
// sandbox's desktop, whichever driver runs the sandbox.
//
// local: nsenter takes the agent's user, mount, network, pid, ipc and uts namespaces, its root and
// working directory, and becomes uid/gid 1000 inside (the sandbox's own host uid outside), with no
// capabilities. On request the process also joins the sandbox's cgroups, so that what it uses
// counts against the sandbox's limits as a process of the desktop's terminal would. The cgroups
// are found from /proc (the agent's against this process's own), not from porthole's cgroup code,
// so the limit tests do not trust the code they test.
//
// gvisor: the sandbox's processes are not host processes (the host sees only the Sentry, its gofer
// and ptrace stubs), so there are no namespaces to enter: `runsc exec` asks gVisor to start the
// program inside, as the sandbox's uid (the same inside and out). Its pid is gVisor's, not the
// host's, and the sandbox's cgroup holds the Sentry, not the program: pid() and joinCgroups() are
// local-only (LocalInSandbox).

/** The environment of a process of the sandbox (bwrap's --setenv, the OCI spec's env), and nothing of the test runner's. */
const sandboxEnv = { PATH: '/usr/bin:/bin', HOME: inside.home, USER: 'porthole', LANG: 'C.UTF-8' };

export interface LocalSandboxTarget {
  readonly driver: 'local';
  readonly sandboxId: string;
  /** Host pid of the sandbox's agent: whose namespaces, root and working directory nsenter takes. */
  readonly agentPid: number;
  /** The sandbox's host uid (sandbox.json). */
  readonly uid: number;
  /** The uid of its processes as they see it: 1000 in the sandbox's user namespace. */
  readonly insideUid: number;
  /** The cgroup directories the agent sits in and this process does not: the sandbox's limits. */
  readonly cgroupDirs: readonly string[];
}

export interface GvisorSandboxTarget {
  readonly driver: 'gvisor';
  readonly sandboxId: string;
  /** The sandbox's host uid (sandbox.json): its processes' uid inside gVisor too. */
  readonly uid: number;
  readonly insideUid: number;
  /** The driver's runsc (its --root under the data directory, its platform): the one that knows the sandbox. */
  readonly runsc: Runsc;
}

export type SandboxTarget = LocalSandboxTarget | GvisorSandboxTarget;

interface MountedHierarchy {
  readonly root: string;
  readonly mountPoint: string;
  readonly fsType: string;
  readonly superOptions: readonly string[];
}

/** `<hierarchy id>:<controllers>:<path>` lines of /proc/<pid>/cgroup, by controllers ("" for v2). */
async function cgroupPaths(pid: number | 'self'): Promise<Map<string, string>> {
  const text = await readFile(`/proc/${pid}/cgroup`, 'utf8');
  const paths = new Map<string, string>();
  for (const line of text.trim().split('\n')) {
    const match = /^\d+:([^:]*):(.*)$/.exec(line);
    if (match) paths.set(match[1]!, match[2]!);
  }
  return paths;
}

async function cgroupMounts(): Promise<MountedHierarchy[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const mounts: MountedHierarchy[] = [];
  for (const line of text.trim().split('\n')) {
    const [left = '', right = ''] = line.split(' - ');
    const fields = left.split(' ');
    const [fsType = '', , superOptions = ''] = right.split(' ');
    if (fsType === 'cgroup' || fsType === 'cgroup2') mounts.push({ root: fields[3]!, mountPoint: fields[4]!, fsType, superOptions: superOptions.split(',') });
  }
  return mounts;
}

/** The directories of `pid`'s cgroups that differ from this process's own. */
async function cgroupDirsOf(pid: number): Promise<string[]> {
  const [theirs, ours, mounts] = await Promise.all([cgroupPaths(pid), cgroupPaths('self'), cgroupMounts()]);
  const dirs: string[] = [];
  for (const [controllers, path] of theirs) {
    if (ours.get(controllers) === path) continue;
    const mount =
      controllers === ''
        ? mounts.find((m) => m.fsType === 'cgroup2')
        : mounts.find((m) => m.fsType === 'cgroup' && controllers.split(',').every((c) => m.superOptions.includes(c)));
    if (!mount) throw new Error(`pid ${pid} is in the cgroup ${controllers}:${path}, whose hierarchy is not mounted here`);
    const relative = mount.root === '/' ? path : path.startsWith(mount.root) ? path.slice(mount.root.length) : null;
    if (relative === null) throw new Error(`pid ${pid}'s cgroup ${controllers}:${path} lies outside its mount (root ${mount.root})`);
    dirs.push(join(mount.mountPoint, relative));
  }
  return dirs;
}

/** Live processes running as `uid` on this host: what is left of a sandbox, whatever found it or not. */
export async function processesOfUid(uid: number): Promise<number[]> {
  const found: number[] = [];
  for (const pid of (await readdir('/proc')).filter((p) => /^\d+$/.test(p))) {
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    if (/^State:\s+Z/m.test(status)) continue;
    if (new RegExp(`^Uid:\\s+${uid}\\s`, 'm').test(status)) found.push(Number(pid));
  }
  return found;
}

/**
 * The sandbox as sandbox.json records it: a gVisor sandbox when the record says `driver: 'gvisor'`
 * (the gvisor driver's record), a local one otherwise, with the cgroups its agent runs in. Throws
 * naming what is missing.
 */
export async function sandboxTarget(dataDir: string, sandboxId: string): Promise<SandboxTarget> {
  const dir = join(sandboxesDir(dataDir), sandboxId);
  const text = await readFile(join(dir, 'sandbox.json'), 'utf8').catch(() => null);
  if (text === null) throw new Error(`sandbox ${sandboxId}: no sandbox.json under ${dataDir}`);
  const raw = JSON.parse(text) as { driver?: unknown; uid?: unknown; platform?: unknown };
  if (raw.driver !== 'gvisor') return localSandboxTarget(dataDir, sandboxId);
  const platform = gvisorPlatforms.find((p) => p === raw.platform);
  if (typeof raw.uid !== 'number' || !platform) throw new Error(`sandbox ${sandboxId}: its gvisor sandbox.json has no uid or platform: ${text}`);
  return {
    driver: 'gvisor',
    sandboxId,
    uid: raw.uid,
    insideUid: raw.uid,
    runsc: new Runsc({ root: join(dataDir, 'runsc'), platform: platform as GvisorPlatform }),
  };
}

/** A local sandbox (bubblewrap) as sandbox.json records it; throws for any other driver's. */
export async function localSandboxTarget(dataDir: string, sandboxId: string): Promise<LocalSandboxTarget> {
  const record = await readRecord(join(sandboxesDir(dataDir), sandboxId));
  if (!record?.agent) throw new Error(`sandbox ${sandboxId}: no local sandbox.json with an agent pid under ${dataDir}`);
  return { driver: 'local', sandboxId, agentPid: record.agent.pid, uid: record.uid, insideUid, cgroupDirs: await cgroupDirsOf(record.agent.pid) };
}

export interface Finished {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface InSandbox {
  /** On the host: nsenter (local) or runsc exec (gvisor), which waits for the program and exits with its status. */
  readonly child: ChildProcess;
  /** stdout so far. */
  stdout(): string;
  /** Resolves with stdout once it matches. Rejects when the program ends first or after `timeoutMs`. */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<string>;
  readonly finished: Promise<Finished>;
  /** Ends the program (SIGKILL, from the host) and waits for `child`. Idempotent. */
  kill(): Promise<Finished>;
}

/** A program in a local sandbox: a host process, which can be moved into the sandbox's cgroups. */
export interface LocalInSandbox extends InSandbox {
  /** The program's host pid (nsenter's child, in the sandbox's pid namespace). */
  pid(): Promise<number>;
  /** Moves the program into the sandbox's cgroups; what it starts afterwards inherits them. */
  joinCgroups(): Promise<void>;
}

/** Starts `argv` (a path inside the sandbox first) as the sandbox's user; stdin, stdout and stderr are pipes. */
export function spawnInSandbox(target: LocalSandboxTarget, argv: readonly string[]): LocalInSandbox;
export function spawnInSandbox(target: SandboxTarget, argv: readonly string[]): InSandbox;
export function spawnInSandbox(target: SandboxTarget, argv: readonly string[]): InSandbox {
  return target.driver === 'local' ? spawnWithNsenter(target, argv) : spawnWithRunsc(target, argv);
}

/** What a program in a sandbox offers whichever way it was started; `killProgram` SIGKILLs the program itself. */
function watchProgram(
  target: SandboxTarget,
  child: ChildProcess,
  launcher: string,
  killProgram: () => Promise<void>,
): InSandbox & { isDone(): boolean; stderr(): string } {
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  child.stdin!.on('error', () => {}); // EPIPE once the program is gone
  const finished = new Promise<Finished>((resolve, reject) => {
    child.once('error', (error) => reject(new Error(`${launcher} could not be started: ${error.message}`, { cause: error })));
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  finished.catch(() => {});
  let isDone = false;
  void finished.then(
    () => (isDone = true),
    () => (isDone = true),
  );
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    isDone: () => isDone,
    async waitForOutput(pattern, timeoutMs = 15_000) {
      await until(
        `output ${pattern} in sandbox ${target.sandboxId}`,
        () => ({ stdout, isDone }),
        (s) => pattern.test(s.stdout) || s.isDone,
        timeoutMs,
        { intervalMs: 20 },
      );
      if (!pattern.test(stdout))
        throw new Error(
          `the program in sandbox ${target.sandboxId} ended without printing ${pattern}; stdout: ${stdout.slice(-500)}; stderr: ${stderr.slice(-500)}`,
        );
      return stdout;
    },
    finished,
    async kill() {
      if (!isDone) await killProgram();
      return finished;
    },
  };
}

function spawnWithNsenter(target: LocalSandboxTarget, argv: readonly string[]): LocalInSandbox {
  const enter = [
    '--target',
    String(target.agentPid),
    '--user',
    '--mount',
    '--net',
    '--pid',
    '--ipc',
    '--uts',
    '--root',
    '--wd',
    '--setuid',
    String(target.insideUid),
    '--setgid',
    String(target.insideUid),
  ];
  const child = spawn('nsenter', [...enter, '--', ...argv], { env: sandboxEnv, stdio: ['pipe', 'pipe', 'pipe'] });

  const pid = async (): Promise<number> => {
    // nsenter forks once to enter the pid namespace; its one child is the program.
    const children = await until(
      `nsenter ${child.pid} has started its child in sandbox ${target.sandboxId}`,
      () => readFile(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').catch(() => ''),
      (text) => text.trim() !== '' || watched.isDone(),
      10_000,
      { intervalMs: 20 },
    );
    const first = Number(children.trim().split(' ')[0]);
    if (!Number.isInteger(first) || first <= 0) throw new Error(`nsenter ended before its child could be found; stderr: ${watched.stderr()}`);
    return first;
  };

  const watched = watchProgram(target, child, 'nsenter', async () => {
    const program = await pid().catch(() => null);
    try {
      if (program !== null) process.kill(program, 'SIGKILL');
      else child.kill('SIGKILL');
    } catch {
      // ESRCH: it ended meanwhile.
    }
  });

  return {
    child,
    stdout: watched.stdout,
    waitForOutput: watched.waitForOutput,
    finished: watched.finished,
    kill: watched.kill,
    pid,
    async joinCgroups() {
      if (target.cgroupDirs.length === 0) throw new Error(`sandbox ${target.sandboxId}: its agent runs in no cgroup of its own`);
      const program = await pid();
      for (const dir of target.cgroupDirs) await writeFile(join(dir, 'cgroup.procs'), `${program}\n`);
    },
  };
}

function spawnWithRunsc(target: GvisorSandboxTarget, argv: readonly string[]): InSandbox {
  // runsc writes the program's pid inside gVisor here: what `runsc kill --pid` needs to end it.
  // Killing runsc exec itself would leave the program running inside.
  const pidFile = join(tmpdir(), `porthole-test-exec-${randomBytes(6).toString('hex')}.pid`);
  const exec = [
    'exec',
    '--user',
    `${target.insideUid}:${target.insideUid}`,
    '--cwd',
    inside.home,
    ...Object.entries(sandboxEnv).flatMap(([name, value]) => ['--env', `${name}=${value}`]),
    '--internal-pid-file',
    pidFile,
    target.sandboxId,
  ];
  const child = spawn(target.runsc.binary, [...target.runsc.globalArgs(), ...exec, ...argv], {
    env: { PATH: '/usr/bin:/bin:/usr/sbin:/sbin' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const watched = watchProgram(target, child, 'runsc exec', async () => {
    const program = await until(
      `runsc exec ${child.pid} has written the pid of its program in sandbox ${target.sandboxId}`,
      () => readFile(pidFile, 'utf8').catch(() => ''),
      (text) => text.trim() !== '' || watched.isDone(),
      10_000,
      { intervalMs: 20 },
    ).catch(() => '');
    const pid = Number(program.trim());
    if (Number.isInteger(pid) && pid > 0) {
      // It may have ended meanwhile: then runsc says there is no such process, and that is fine.
      await new Promise<void>((resolve) =>
        spawn(target.runsc.binary, [...target.runsc.globalArgs(), 'kill', '--pid', String(pid), target.sandboxId, 'KILL'], { stdio: 'ignore' })
          .once('close', () => resolve())
          .once('error', () => resolve()),
      );
    } else child.kill('SIGKILL');
  });
  void watched.finished.finally(() => rm(pidFile, { force: true })).catch(() => {});
  return {
    child,
    stdout: watched.stdout,
    waitForOutput: watched.waitForOutput,
    finished: watched.finished,
    kill: watched.kill,
  };
}

/** Runs `argv` in the sandbox to its end (killed after `timeoutMs`). */
export async function runInSandbox(target: SandboxTarget, argv: readonly string[], options: { timeoutMs?: number } = {}): Promise<Finished> {
  const program = spawnInSandbox(target, argv);
  program.child.stdin!.end();
  const timeoutMs = options.timeoutMs ?? 30_000;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
  const result = await Promise.race([program.finished, timedOut]);
  clearTimeout(timer);
  if (result === 'timeout') {
    const killed = await program.kill();
    throw new Error(
      `${argv.join(' ').slice(0, 200)} in sandbox ${target.sandboxId} did not end within ${timeoutMs} ms; stdout: ${killed.stdout.slice(-500)}; stderr: ${killed.stderr.slice(-500)}`,
    );
  }
  return result;
}

/**
 * Runs a node script in the sandbox (`/usr/bin/node -e script input`, with `input` as JSON in
 * process.argv[1]) and returns the JSON of its last line of output. Throws with its stderr when it
 * exits otherwise than 0.
 */
export async function nodeInSandbox<T>(target: SandboxTarget, script: string, input: unknown = null, options: { timeoutMs?: number } = {}): Promise<T> {
  const result = await runInSandbox(target, ['/usr/bin/node', '-e', script, JSON.stringify(input)], options);
  if (result.code !== 0) throw new Error(`node in sandbox ${target.sandboxId} exited ${result.code ?? result.signal}; stderr: ${result.stderr.slice(-1000)}`);
  const last = result.stdout.trim().split('\n').at(-1) ?? '';
  try {
    return JSON.parse(last) as T;
  } catch {
    throw new Error(`node in sandbox ${target.sandboxId} printed no JSON: ${result.stdout.slice(-500)}; stderr: ${result.stderr.slice(-500)}`);
  }
}
