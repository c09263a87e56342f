import { mkdir, open, readdir, readFile, rmdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isSandboxId, type SandboxId } from '../../protocol/ids.js';

// Reading and writing cgroup files, and the life of a sandbox's cgroup directory, the same in v1
// and v2: a cgroup is a directory the kernel fills with control files; mkdir creates it, rmdir
// removes it once no process is inside, and a process moves in by writing its pid to cgroup.procs.

/** Under the server's own cgroup, in each hierarchy: one child per sandbox. */
export const sandboxesDirName = 'porthole-sandboxes';

/** The errno of a failed call, also through the Error that writeValue wraps around it. */
export const errno = (error: unknown): string => {
  const e = error as NodeJS.ErrnoException;
  return e.code ?? (e.cause as NodeJS.ErrnoException | undefined)?.code ?? String(error);
};

export async function readText(path: string): Promise<string> {
  return (await readFile(path, 'utf8')).trim();
}

/** A number, `max` (v2), or v1's "unlimited" (the largest page-aligned signed 64-bit value) as Infinity. */
export async function readLimit(path: string): Promise<number> {
  const text = await readText(path);
  if (text === 'max') return Infinity;
  const value = Number(text);
  if (!Number.isFinite(value)) throw new Error(`${path}: not a number: ${JSON.stringify(text)}`);
  return value >= 2 ** 62 ? Infinity : value;
}

/** `key value` lines (memory.events, pids.events, memory.oom_control). */
export async function readKeyed(path: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const line of (await readText(path)).split('\n')) {
    const [key, value] = line.split(' ');
    if (key && value !== undefined) out.set(key, Number(value));
  }
  return out;
}

/** One write() per value, as the kernel wants; the error names the file, the value and the errno. */
export async function writeValue(path: string, value: string | number): Promise<void> {
  try {
    await writeFile(path, String(value));
  } catch (error) {
    throw new Error(`cannot write ${value} to ${path}: ${errno(error)}`, { cause: error });
  }
}

export async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Pids of the processes in a cgroup (not its children's). */
export async function processesIn(dir: string): Promise<number[]> {
  const text = await readText(join(dir, 'cgroup.procs'));
  return text === '' ? [] : text.split('\n').map(Number);
}

/** mkdir that tolerates an existing directory; true when it created it. */
export async function makeCgroupDir(dir: string): Promise<boolean> {
  try {
    await mkdir(dir);
    return true;
  } catch (error) {
    if (errno(error) === 'EEXIST') return false;
    throw new Error(`cannot create the cgroup ${dir}: ${errno(error)}`, { cause: error });
  }
}

/**
 * Creates `<parent>/<id>`, and `parent` first when missing. `prepareParent` (idempotent: v2 enables
 * controllers there) runs before the leaf is made. Another sandbox's remove() may rmdir an empty
 * parent between the two mkdirs, so ENOENT is retried.
 */
export async function makeLeaf(parent: string, id: SandboxId, prepareParent: () => Promise<void> = async () => {}): Promise<string> {
  const leaf = join(parent, id);
  for (let attempt = 1; ; attempt++) {
    await makeCgroupDir(parent);
    try {
      await prepareParent();
    } catch (error) {
      if (errno(error) === 'ENOENT' && attempt < 5) continue;
      throw error;
    }
    try {
      await mkdir(leaf);
      return leaf;
    } catch (error) {
      if (errno(error) === 'EEXIST') return leaf;
      if (errno(error) === 'ENOENT' && attempt < 5) continue;
      throw new Error(`cannot create the cgroup ${leaf}: ${errno(error)}`, { cause: error });
    }
  }
}

export async function addProcess(dir: string, pid: number): Promise<void> {
  if (!Number.isSafeInteger(pid) || pid < 1) throw new Error(`not a pid: ${pid}`);
  try {
    await writeFile(join(dir, 'cgroup.procs'), String(pid));
  } catch (error) {
    if (errno(error) === 'ESRCH') throw new Error(`cannot move process ${pid} into ${dir}: it is gone`, { cause: error });
    throw new Error(`cannot move process ${pid} into ${dir}: ${errno(error)}`, { cause: error });
  }
}

/** How long rmdir is retried while the kernel finishes tearing down processes that already exited. */
const dyingTasksMs = 2_000;

/**
 * rmdir of a sandbox's cgroup, then of the parent when it was the last. Idempotent; kills nothing.
 * EBUSY with an empty cgroup.procs means tasks that exited are still being torn down: retried.
 */
export async function removeLeaf(leaf: string, parent: string): Promise<void> {
  const deadline = Date.now() + dyingTasksMs;
  for (;;) {
    try {
      await rmdir(leaf);
      break;
    } catch (error) {
      const code = errno(error);
      if (code === 'ENOENT') break;
      if (code !== 'EBUSY') throw new Error(`cannot remove the cgroup ${leaf}: ${code}`, { cause: error });
      const inside = await processesIn(leaf).catch((): number[] => []);
      if (inside.length > 0) throw new Error(`cannot remove the cgroup ${leaf}: processes ${inside.join(', ')} are still in it`, { cause: error });
      if (Date.now() > deadline)
        throw new Error(`cannot remove the cgroup ${leaf}: still busy ${dyingTasksMs} ms after its last process left`, { cause: error });
      await sleep(50);
    }
  }
  // Other sandboxes' cgroups keep the parent busy: then it stays, as it should.
  await rmdir(parent).catch(() => {});
}

/** Sandbox ids with a cgroup under `parent`. */
export async function listLeaves(parent: string): Promise<SandboxId[]> {
  const entries = await readdir(parent, { withFileTypes: true }).catch((error: unknown) => {
    if (errno(error) === 'ENOENT') return [];
    throw new Error(`cannot list ${parent}: ${errno(error)}`, { cause: error });
  });
  return entries.filter((e) => e.isDirectory() && isSandboxId(e.name)).map((e) => e.name as SandboxId);
}

/**
 * Whether this process may create cgroups under `parent` (made on the way when missing, and removed
 * again when the probe made it, so a doctor run leaves nothing behind). Returns the errno when not.
 */
export async function probeParent(
  parent: string,
  controlFile: string,
  prepareParent: () => Promise<void> = async () => {},
  lookAround: (parent: string) => Promise<void> = async () => {},
): Promise<string | null> {
  let created: boolean;
  try {
    created = await makeCgroupDir(parent);
  } catch (error) {
    return errno(error);
  }
  try {
    await prepareParent();
    // A file the kernel shows only where the controller is active, opened for writing as create()
    // would, but nothing written: an open for writing is the question, a write would change a limit.
    await (await open(join(parent, controlFile), 'r+')).close();
    await lookAround(parent);
    return null;
  } catch (error) {
    return errno(error);
  } finally {
    if (created) await rmdir(parent).catch(() => {});
  }
}

/** The value read, or `fallback` when the file is gone because the cgroup was removed. */
export async function unlessGone<T>(read: Promise<T>, fallback: T): Promise<T> {
  try {
    return await read;
  } catch (error) {
    // A cgroup being removed answers ENOENT, or on v1 ENODEV for a file of a directory on its way out.
    if (errno(error) === 'ENOENT' || errno(error) === 'ENODEV') return fallback;
    throw error;
  }
}
