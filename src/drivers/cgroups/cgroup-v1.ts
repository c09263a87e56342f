import { join } from 'node:path';
import type { SandboxId } from '../../protocol/ids.js';
import {
  addProcess,
  exists,
  listLeaves,
  makeLeaf,
  probeParent,
  readKeyed,
  readLimit,
  readText,
  removeLeaf,
  sandboxesDirName,
  unlessGone,
  writeValue,
} from './cgroup-fs.js';
import { v1DirOf, type OwnCgroups } from './cgroup-mounts.js';
import { checkedSandboxId, checkLimits, unenforcedLimits, type CgroupHost, type LimitsHit, type SandboxCgroup, type SandboxLimits } from './sandbox-cgroup.js';

// cgroup v1 (the kernel's cgroup-v1 docs: memory.rst, pids.rst, sched-design-CFS "cpu.shares"):
// one hierarchy per controller, each mounted on its own. A sandbox gets a directory
// `<this process's cgroup>/porthole-sandboxes/<id>` in every hierarchy this process may write.

type Controller = 'memory' | 'pids' | 'cpu';
const controllers: readonly Controller[] = ['memory', 'pids', 'cpu'];

/** A file only a cgroup with that controller has, and the one create() writes. */
const limitFile: Record<Controller, string> = { memory: 'memory.limit_in_bytes', pids: 'pids.max', cpu: 'cpu.shares' };

/** cpu.shares: 1024 is a default task's share, as cpu.weight 100 is in v2. The kernel's minimum is 2. */
const sharesOf = (weight: number) => Math.max(2, Math.round((weight * 1024) / 100));
const weightOf = (shares: number) => Math.min(10_000, Math.max(1, Math.round((shares * 100) / 1024)));

type Dirs = Partial<Record<Controller, string>>;

/**
 * The memory limit, swap included where the kernel accounts swap (memory.memsw.*): a sandbox must
 * not dodge its limit by swapping. memsw must be ≥ the memory limit at every step, so it is lifted
 * first and brought down to the same value last. Without swap accounting, swappiness 0 keeps the
 * cgroup's pages out of swap instead. The OOM killer stays enabled (memory.oom_control untouched),
 * so the kernel kills inside the cgroup when it is full, rather than pausing it.
 */
async function setMemoryLimit(dir: string, bytes: number): Promise<void> {
  const memsw = join(dir, 'memory.memsw.limit_in_bytes');
  if (await exists(memsw)) {
    await writeValue(memsw, -1);
    await writeValue(join(dir, 'memory.limit_in_bytes'), bytes);
    await writeValue(memsw, bytes);
  } else {
    await writeValue(join(dir, 'memory.limit_in_bytes'), bytes);
    await writeValue(join(dir, 'memory.swappiness'), 0);
  }
}

/** Since Linux 4.13 memory.oom_control counts OOM kills; before, a failcnt at the limit is the sign. */
async function memoryLimitHit(dir: string): Promise<boolean> {
  const oom = await unlessGone(readKeyed(join(dir, 'memory.oom_control')), null);
  if (oom === null) return false;
  const kills = oom.get('oom_kill');
  if (kills !== undefined) return kills > 0;
  const [failcnt, maxUsage, limit] = await Promise.all(
    ['memory.failcnt', 'memory.max_usage_in_bytes', 'memory.limit_in_bytes'].map((f) => unlessGone(readLimit(join(dir, f)), 0)),
  );
  return failcnt! > 0 && maxUsage! >= limit!;
}

class V1SandboxCgroup implements SandboxCgroup {
  constructor(
    readonly id: SandboxId,
    readonly limits: SandboxLimits,
    private readonly dirs: Dirs,
    private readonly parents: Dirs,
  ) {}

  async add(pid: number): Promise<void> {
    for (const c of controllers) {
      const dir = this.dirs[c];
      if (dir) await addProcess(dir, pid);
    }
  }

  async usage() {
    const { memory, pids } = this.dirs;
    const [memoryBytes, pidCount] = await Promise.all([
      memory ? readLimit(join(memory, 'memory.usage_in_bytes')) : null,
      pids ? readLimit(join(pids, 'pids.current')) : null,
    ]);
    return { memoryBytes, pids: pidCount };
  }

  async limitsHit(): Promise<LimitsHit> {
    const { memory, pids } = this.dirs;
    const [memoryHit, pidsHit] = await Promise.all([
      memory ? memoryLimitHit(memory) : false,
      pids ? unlessGone(readKeyed(join(pids, 'pids.events')), new Map<string, number>()).then((events) => (events.get('max') ?? 0) > 0) : false,
    ]);
    return { memory: memoryHit, pids: pidsHit };
  }

  async remove(): Promise<void> {
    for (const c of controllers) {
      const dir = this.dirs[c];
      if (dir) await removeLeaf(dir, this.parents[c]!);
    }
  }
}

/** What `limits` says on a host that enforces only `dirs`' controllers. */
function enforced(limits: SandboxLimits, dirs: Dirs): SandboxLimits {
  return {
    memoryBytes: dirs.memory ? limits.memoryBytes : unenforcedLimits.memoryBytes,
    pids: dirs.pids ? limits.pids : unenforcedLimits.pids,
    cpuWeight: dirs.cpu ? limits.cpuWeight : unenforcedLimits.cpuWeight,
  };
}

/**
 * The v1 host, or null when neither memory nor pids is a v1 hierarchy here (then v2 is asked).
 * Each controller counts as enforceable when a probe may create cgroups in its hierarchy.
 */
export async function v1Host(own: OwnCgroups): Promise<CgroupHost | null> {
  const ownDirs = Object.fromEntries(controllers.map((c) => [c, v1DirOf(own, c)])) as Record<Controller, string | null>;
  if (ownDirs.memory === null && ownDirs.pids === null) return null;

  const parents: Dirs = {};
  const refused: string[] = [];
  for (const c of controllers) {
    const dir = ownDirs[c];
    if (dir === null) {
      refused.push(`${c} (no v1 hierarchy mounted)`);
      continue;
    }
    const parent = join(dir, sandboxesDirName);
    const problem = await probeParent(parent, limitFile[c]);
    if (problem === null) parents[c] = parent;
    else refused.push(`${c} (${parent}: ${problem})`);
  }
  const swapAccounted = ownDirs.memory !== null && (await exists(join(ownDirs.memory, 'memory.memsw.limit_in_bytes')));
  const names: Record<Controller, string> = {
    memory: swapAccounted ? 'memory (swap included)' : 'memory (swap not accounted: swappiness 0)',
    pids: 'pids',
    cpu: 'cpu (shares)',
  };
  const granted = controllers.filter((c) => parents[c]).map((c) => `${names[c]} in ${parents[c]}`);
  const why = `cgroup v1: ${granted.length > 0 ? granted.join(', ') : 'nothing writable'}${refused.length > 0 ? `; not enforced: ${refused.join(', ')}` : ''}`;

  const open = async (id: SandboxId, dirs: Dirs): Promise<SandboxCgroup> => {
    const [memoryBytes, pids, shares] = await Promise.all([
      dirs.memory ? readLimit(join(dirs.memory, 'memory.limit_in_bytes')) : unenforcedLimits.memoryBytes,
      dirs.pids ? readLimit(join(dirs.pids, 'pids.max')) : unenforcedLimits.pids,
      dirs.cpu ? readText(join(dirs.cpu, 'cpu.shares')).then(Number) : null,
    ]);
    return new V1SandboxCgroup(id, { memoryBytes, pids, cpuWeight: shares === null ? unenforcedLimits.cpuWeight : weightOf(shares) }, dirs, parents);
  };

  return {
    version: 'v1',
    enforceable: { memory: Boolean(parents.memory), pids: Boolean(parents.pids), cpu: Boolean(parents.cpu) },
    why,

    async create(rawId, limits) {
      const id = checkedSandboxId(rawId);
      checkLimits(limits);
      const dirs: Dirs = {};
      try {
        for (const c of controllers) if (parents[c]) dirs[c] = await makeLeaf(parents[c], id);
        if (dirs.memory) await setMemoryLimit(dirs.memory, limits.memoryBytes);
        if (dirs.pids) await writeValue(join(dirs.pids, 'pids.max'), limits.pids);
        if (dirs.cpu) await writeValue(join(dirs.cpu, 'cpu.shares'), sharesOf(limits.cpuWeight));
      } catch (error) {
        await new V1SandboxCgroup(id, limits, dirs, parents).remove().catch(() => {});
        throw error;
      }
      return new V1SandboxCgroup(id, enforced(limits, dirs), dirs, parents);
    },

    async open(rawId) {
      const id = checkedSandboxId(rawId);
      const dirs: Dirs = {};
      for (const c of controllers) {
        const leaf = parents[c] ? join(parents[c], id) : null;
        if (leaf && (await exists(leaf))) dirs[c] = leaf;
      }
      return Object.keys(dirs).length > 0 ? open(id, dirs) : null;
    },

    async list() {
      const found = new Set<SandboxId>();
      for (const c of controllers) if (parents[c]) for (const id of await listLeaves(parents[c])) found.add(id);
      return [...found].sort();
    },
  };
}
