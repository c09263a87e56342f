import { execFile } from 'node:child_process';
import { access, constants, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { runscProcesses } from '../../src/drivers/gvisor/runsc.js';
import { sandboxDir } from '../../src/drivers/local-layout.js';
import { crashLoop, type CrashLoop } from './sandbox-processes.js';
import { until } from './until.js';

// A gVisor sandbox's processes for the fault and e2e tests that run on the gvisor driver. The
// person's processes (the agent, Xvnc, openbox, xterm, Chromium) are tasks of gVisor's Sentry, not
// host processes: the host's /proc (sandbox-processes.ts) shows none of them. They are listed the
// way an operator lists them, with `runsc ps` (pids are the sandbox's own), and killed with
// `runsc kill --pid`. On the host there are only runsc's processes: the Sentry, the gofer and the
// ptrace stubs, found by the bundle path on their command line (`runscProcesses`).

const run = promisify(execFile);
const runscBinary = '/usr/bin/runsc';
const commandTimeoutMs = 15_000;

/** One process inside the sandbox, as `runsc ps` lists it. */
export interface InsideProcess {
  /** The sandbox's own pid (the agent, the container's init, is 1). */
  readonly pid: number;
  readonly ppid: number;
  readonly uid: number;
  /** The task's name: `node` (the agent), `Xvnc`, `openbox`, `xterm`, `chromium`, … */
  readonly cmd: string;
}

/** Fails naming the package when runsc is not installed, as a missing prerequisite must. */
export async function assertRunscInstalled(): Promise<void> {
  const found = await access(runscBinary, constants.X_OK).then(
    () => true,
    () => false,
  );
  if (!found) throw new Error(`${runscBinary} is missing (apt-get install runsc; npm test installs it through scripts/setup.sh --test)`);
}

function runsc(dataDir: string, args: string[]): Promise<{ stdout: string }> {
  return run(runscBinary, [`--root=${join(dataDir, 'runsc')}`, ...args], { timeout: commandTimeoutMs });
}

/**
 * Every process inside the sandbox, by `runsc ps`. Its table, not `--format=json`: the runsc of
 * Debian 12 (20221219) prints only a list of pids as JSON. Columns: UID PID PPID C TTY STIME TIME
 * CMD, CMD last (a task name may hold spaces). Throws when runsc does not know the sandbox.
 */
export async function insideProcesses(dataDir: string, sandboxId: string): Promise<InsideProcess[]> {
  const { stdout } = await runsc(dataDir, ['ps', sandboxId]);
  const [header = '', ...rows] = stdout.split('\n').filter((line) => line.trim() !== '');
  if (!/^UID\s+PID\s+PPID\s+C\s+TTY\s+STIME\s+TIME\s+CMD$/.test(header.trim())) throw new Error(`runsc ps: unexpected header ${JSON.stringify(header)}`);
  return rows.map((row) => {
    const match = /^\s*(\d+)\s+(\d+)\s+(\d+)\s+\S+\s+\S+\s+\S+\s+\S+\s+(.+?)\s*$/.exec(row);
    if (!match) throw new Error(`runsc ps: unexpected row ${JSON.stringify(row)}`);
    return { uid: Number(match[1]), pid: Number(match[2]), ppid: Number(match[3]), cmd: match[4]! };
  });
}

/**
 * The one process named `cmd` inside the sandbox. A child the agent is spawning shows as a second
 * `node` until it execs, so a count other than one is looked at again for up to 2 s; then it throws.
 */
export async function insideProcess(dataDir: string, sandboxId: string, cmd: string): Promise<InsideProcess> {
  const matches = await until(
    `exactly one process named ${cmd} inside gVisor sandbox ${sandboxId}`,
    async () => (await insideProcesses(dataDir, sandboxId)).filter((p) => p.cmd === cmd),
    (found) => found.length === 1,
    2_000,
    { intervalMs: 50 },
  );
  return matches[0]!;
}

/** Whether that process (pid and name: gVisor hands out pids in order, so a reuse would need a wrap) still runs inside. */
export async function isAliveInside(dataDir: string, sandboxId: string, target: InsideProcess): Promise<boolean> {
  const all = await insideProcesses(dataDir, sandboxId).catch(() => [] as InsideProcess[]);
  return all.some((p) => p.pid === target.pid && p.cmd === target.cmd);
}

/**
 * SIGKILL to one process inside, through runsc (from outside, as an operator or a crash would).
 * gVisor hands out pids in order, so the pid still names the process `insideProcess` found; runsc
 * fails, naming it, when it is gone.
 */
export async function killInside(dataDir: string, sandboxId: string, target: InsideProcess): Promise<void> {
  await runsc(dataDir, ['kill', '--pid', String(target.pid), sandboxId, 'KILL']).catch((error: Error) => {
    throw new Error(`runsc kill ${target.cmd} (pid ${target.pid} in ${sandboxId}): ${error.message}`);
  });
}

/**
 * Kills every process named `cmd` inside the sandbox as soon as `runsc ps` shows it, until `stop()`:
 * a crash loop, as a broken build of that program would make. `kills` counts them.
 */
export function keepKillingInside(dataDir: string, sandboxId: string, cmd: string): CrashLoop {
  return crashLoop(async () => {
    let kills = 0;
    for (const target of (await insideProcesses(dataDir, sandboxId).catch(() => [] as InsideProcess[])).filter((p) => p.cmd === cmd)) {
      // Fails when it went meanwhile: then there is nothing to count.
      const killed = await runsc(dataDir, ['kill', '--pid', String(target.pid), sandboxId, 'KILL']).then(
        () => true,
        () => false,
      );
      if (killed) kills++;
    }
    return kills;
  }, 20);
}

/** Host pids of the sandbox: the Sentry, the gofer and the ptrace stubs. */
export function sandboxHostProcesses(dataDir: string, sandboxId: string): Promise<number[]> {
  return runscProcesses(join(sandboxDir(dataDir, sandboxId), 'bundle'));
}

/**
 * How a host process of the sandbox names itself: argv[0] (`runsc-sandbox` for the Sentry,
 * `runsc-gofer`; their comm is `exe`, as runsc re-executes /proc/self/exe), or null once it is gone.
 */
export async function hostProcessName(pid: number): Promise<string | null> {
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => null);
  return cmdline === null ? null : (cmdline.split('\0')[0] ?? '');
}

/** The sandbox's runsc daemons on the host, the Sentry and the gofer, by name (the ptrace stubs, which come and go with the processes inside, left out). */
export async function runscDaemons(dataDir: string, sandboxId: string): Promise<{ pid: number; name: string }[]> {
  const named = await Promise.all((await sandboxHostProcesses(dataDir, sandboxId)).map(async (pid) => ({ pid, name: await hostProcessName(pid) })));
  return named
    .filter((p): p is { pid: number; name: string } => p.name === 'runsc-sandbox' || p.name === 'runsc-gofer')
    .sort((a, b) => a.name.localeCompare(b.name));
}
