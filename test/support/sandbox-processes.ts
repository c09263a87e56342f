import { readFile, readdir } from 'node:fs/promises';
import { until } from './until.js';

// A sandbox's processes as the host's /proc shows them, found the way an operator would: by the
// PORTHOLE_SANDBOX_ID marker the driver puts in every sandbox environment, plus their descendants
// (Chromium's helpers rewrite their environment when they set their title, so they carry no
// marker). Deliberately independent of the driver's own scan, so that the fault tests do not trust
// the code they test.

export interface SandboxProcess {
  readonly pid: number;
  readonly ppid: number;
  /** /proc/<pid>/comm: `Xvnc`, `node` (the agent), `chromium`, `bwrap`, … */
  readonly comm: string;
  /** With the pid, names one process across pid reuse. */
  readonly startTime: number;
  /** Its own environment carries PORTHOLE_SANDBOX_ID=<sandboxId>. */
  readonly hasMarker: boolean;
}

interface ProcEntry extends Omit<SandboxProcess, 'hasMarker'> {
  readonly state: string;
  readonly environ: Buffer | null;
}

async function readEntry(pid: number): Promise<ProcEntry | null> {
  const [stat, environ] = await Promise.all([readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null), readFile(`/proc/${pid}/environ`).catch(() => null)]);
  if (stat === null) return null;
  // comm sits in parentheses and may hold spaces or parentheses itself: split after the last ')'.
  const close = stat.lastIndexOf(')');
  const fields = stat.slice(close + 2).split(' ');
  return {
    pid,
    comm: stat.slice(stat.indexOf('(') + 1, close),
    state: fields[0] ?? '?',
    ppid: Number(fields[1]),
    startTime: Number(fields[19]),
    environ,
  };
}

async function allProcesses(): Promise<ProcEntry[]> {
  const pids = (await readdir('/proc')).filter((name) => /^\d+$/.test(name)).map(Number);
  const entries = await Promise.all(pids.map(readEntry));
  // Zombies hold nothing but a pid while their parent reaps them.
  return entries.filter((e): e is ProcEntry => e !== null && e.state !== 'Z');
}

/** Every live process of the sandbox: those carrying its marker and all their descendants. */
export async function sandboxProcesses(sandboxId: string): Promise<SandboxProcess[]> {
  const needle = Buffer.from(`\0PORTHOLE_SANDBOX_ID=${sandboxId}\0`);
  const all = await allProcesses();
  const marked = new Set(all.filter((p) => p.environ !== null && Buffer.concat([Buffer.from([0]), p.environ]).includes(needle)).map((p) => p.pid));
  const found = new Set(marked);
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of all) {
      if (!found.has(p.pid) && found.has(p.ppid)) {
        found.add(p.pid);
        grew = true;
      }
    }
  }
  return all.filter((p) => found.has(p.pid)).map(({ pid, ppid, comm, startTime }) => ({ pid, ppid, comm, startTime, hasMarker: marked.has(pid) }));
}

/**
 * The one marked process with this comm (`Xvnc`, `node` for the agent, `chromium` for the main
 * browser process: its helpers carry no marker). A child the agent is spawning shows as a second
 * `node` until it execs, so a count other than one is looked at again for up to 2 s; then it throws.
 */
export async function sandboxProcess(sandboxId: string, comm: string): Promise<SandboxProcess> {
  const matches = await until(
    `exactly one marked process named ${comm} in sandbox ${sandboxId}`,
    async () => (await sandboxProcesses(sandboxId)).filter((p) => p.hasMarker && p.comm === comm),
    (found) => found.length === 1,
    2_000,
    { intervalMs: 50 },
  );
  return matches[0]!;
}

/** Whether that very process (pid and start time) still runs. */
export async function isAlive(process: Pick<SandboxProcess, 'pid' | 'startTime'>): Promise<boolean> {
  const entry = await readEntry(process.pid);
  return entry !== null && entry.state !== 'Z' && entry.startTime === process.startTime;
}

/** SIGKILL, refusing to signal a pid that was reused by another process meanwhile. */
export async function killProcess(target: Pick<SandboxProcess, 'pid' | 'startTime'>): Promise<void> {
  if (!(await isAlive(target))) throw new Error(`process ${target.pid} is already gone`);
  process.kill(target.pid, 'SIGKILL');
}

/** Open file descriptors of a process (`self`: this one, where the test server runs). */
export async function openFdCount(pid: number | 'self'): Promise<number> {
  return (await readdir(`/proc/${pid}/fd`)).length;
}

/** A crash loop under way: how many kills so far, and how to end it. */
export interface CrashLoop {
  readonly kills: number;
  stop(): Promise<void>;
}

/**
 * Calls `killOnce` (which kills what it finds and says how many) every `intervalMs` until `stop()`:
 * a crash loop, as a broken build of a program would make. The sandbox's driver decides how to find
 * and kill (host /proc here, `runsc` for gVisor: ./gvisor.ts).
 */
export function crashLoop(killOnce: () => Promise<number>, intervalMs: number): CrashLoop {
  let kills = 0;
  let isStopped = false;
  const loop = (async () => {
    while (!isStopped) {
      kills += await killOnce();
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  })();
  return {
    get kills() {
      return kills;
    },
    async stop() {
      isStopped = true;
      await loop;
    },
  };
}

/** Kills every marked process named `comm` in the sandbox as soon as it shows (host /proc, every 50 ms), until `stop()`. */
export function keepKilling(sandboxId: string, comm: string): CrashLoop {
  return crashLoop(async () => {
    let kills = 0;
    for (const target of await sandboxProcesses(sandboxId)) {
      if (!target.hasMarker || target.comm !== comm || !(await isAlive(target))) continue;
      try {
        process.kill(target.pid, 'SIGKILL');
        kills++;
      } catch {
        // Gone between the scan and the kill.
      }
    }
    return kills;
  }, 50);
}
