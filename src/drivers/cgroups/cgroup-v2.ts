import { basename, dirname, join } from 'node:path';
import type { SandboxId } from '../../protocol/ids.js';
import {
  addProcess,
  errno,
  exists,
  listLeaves,
  makeCgroupDir,
  makeLeaf,
  probeParent,
  processesIn,
  readKeyed,
  readLimit,
  readText,
  removeLeaf,
  sandboxesDirName,
  unlessGone,
  writeValue,
} from './cgroup-fs.js';
import { checkedSandboxId, checkLimits, unenforcedLimits, type CgroupHost, type LimitsHit, type SandboxCgroup, type SandboxLimits } from './sandbox-cgroup.js';

// cgroup v2 (the kernel's Documentation/admin-guide/cgroup-v2.rst), written after the document:
// this machine and CI run v1, where only the directory mechanics of this file can be exercised
// (the hybrid /sys/fs/cgroup/unified has no controllers); the limits have not run on a v2 host.
//
// One tree; a controller reaches a cgroup only when its parent lists it in cgroup.subtree_control,
// and a non-root cgroup with processes of its own may not list any ("no internal processes"). So:
//
//   <delegated>/                   cgroup.subtree_control: +memory +pids +cpu
//     porthole-server/             the server itself, when it had to move out of <delegated>
//     porthole-sandboxes/          no processes; cgroup.subtree_control: +memory +pids +cpu
//       <sandbox id>/              memory.max, memory.swap.max=0, pids.max, cpu.weight
//
// <delegated> is the server's own cgroup (a systemd service with Delegate=yes), or its parent when
// the server already runs in `porthole-server` (moved there by an earlier start in this same
// process tree, or placed there by systemd's DelegateSubgroup=porthole-server).

type Controller = 'memory' | 'pids' | 'cpu';
const controllers: readonly Controller[] = ['memory', 'pids', 'cpu'];
const limitFile: Record<Controller, string> = { memory: 'memory.max', pids: 'pids.max', cpu: 'cpu.weight' };
export const serverLeafName = 'porthole-server';

export interface V2Place {
  /** Where the unified hierarchy is mounted, e.g. /sys/fs/cgroup. */
  readonly mountPoint: string;
  /** This process's cgroup path in it, from `0::<path>` in /proc/self/cgroup. */
  readonly path: string;
}

const wordsOf = async (path: string) => (await readText(path)).split(/\s+/).filter(Boolean);

/** Enables `wanted` in `dir`'s cgroup.subtree_control where missing (idempotent). */
async function enableControllers(dir: string, wanted: readonly Controller[]): Promise<void> {
  const enabled = await wordsOf(join(dir, 'cgroup.subtree_control'));
  const missing = wanted.filter((c) => !enabled.includes(c));
  if (missing.length > 0) await writeValue(join(dir, 'cgroup.subtree_control'), missing.map((c) => `+${c}`).join(' '));
}

/**
 * Makes `delegated` pass `wanted` to its children. When it holds processes (EBUSY) and the only one
 * is this server, the server moves into `<delegated>/porthole-server` and tries again; another
 * process there (a login shell's scope) is not ours to move. Returns a sentence when it cannot.
 */
async function delegate(delegated: string, isOwnCgroup: boolean, wanted: readonly Controller[]): Promise<{ problem: string | null; moved: boolean }> {
  try {
    await enableControllers(delegated, wanted);
    return { problem: null, moved: false };
  } catch (error) {
    if (errno(error) !== 'EBUSY') return { problem: `${delegated} refuses to pass them on (${errno(error)})`, moved: false };
  }
  const inside = await processesIn(delegated).catch((): number[] => []);
  const others = inside.filter((pid) => pid !== process.pid);
  if (!isOwnCgroup || others.length > 0) {
    return {
      problem: `${delegated} holds processes (${others.slice(0, 5).join(', ')}${others.length > 5 ? ', …' : ''}), and a cgroup with processes may pass no controller to its children`,
      moved: false,
    };
  }
  const serverLeaf = join(delegated, serverLeafName);
  try {
    await makeCgroupDir(serverLeaf);
    await addProcess(serverLeaf, process.pid);
    await enableControllers(delegated, wanted);
    return { problem: null, moved: true };
  } catch (error) {
    return { problem: `moving porthole into ${serverLeaf} so that ${delegated} may pass controllers on failed: ${(error as Error).message}`, moved: false };
  }
}

class V2SandboxCgroup implements SandboxCgroup {
  constructor(
    readonly id: SandboxId,
    readonly limits: SandboxLimits,
    private readonly leaf: string,
    private readonly parent: string,
    private readonly has: Readonly<Record<Controller, boolean>>,
  ) {}

  add(pid: number): Promise<void> {
    return addProcess(this.leaf, pid);
  }

  async usage() {
    const [memoryBytes, pids] = await Promise.all([
      this.has.memory ? readLimit(join(this.leaf, 'memory.current')) : null,
      this.has.pids ? readLimit(join(this.leaf, 'pids.current')) : null,
    ]);
    return { memoryBytes, pids };
  }

  /** memory.events oom_kill: processes the OOM killer killed here; pids.events max: forks refused at pids.max. */
  async limitsHit(): Promise<LimitsHit> {
    const none = new Map<string, number>();
    const [memory, pids] = await Promise.all([
      this.has.memory ? unlessGone(readKeyed(join(this.leaf, 'memory.events')), none) : none,
      this.has.pids ? unlessGone(readKeyed(join(this.leaf, 'pids.events')), none) : none,
    ]);
    return { memory: (memory.get('oom_kill') ?? 0) > 0, pids: (pids.get('max') ?? 0) > 0 };
  }

  remove(): Promise<void> {
    return removeLeaf(this.leaf, this.parent);
  }
}

/**
 * The v2 host at `place`. Exported apart from detectCgroups so that the directory mechanics can be
 * tested on a hybrid host's controller-less unified hierarchy.
 */
export async function v2Host(place: V2Place): Promise<CgroupHost> {
  // join() keeps the slash of the root cgroup's `/`: drop it, the directory names appear in sentences.
  const ownDir = join(place.mountPoint, place.path).replace(/(.)\/+$/, '$1');
  const isInServerLeaf = basename(place.path) === serverLeafName;
  const delegated = isInServerLeaf ? dirname(ownDir) : ownDir;
  const parent = join(delegated, sandboxesDirName);
  const refused: string[] = [];

  const available = await wordsOf(join(delegated, 'cgroup.controllers')).catch((): string[] => []);
  const offered = controllers.filter((c) => available.includes(c));
  for (const c of controllers) if (!offered.includes(c)) refused.push(`${c} (not delegated to ${delegated})`);

  let granted: Controller[] = [];
  let moved = false;
  if (offered.length > 0) {
    const delegation = await delegate(delegated, !isInServerLeaf, offered);
    moved = delegation.moved;
    if (delegation.problem) refused.push(`${offered.join(', ')} (${delegation.problem})`);
    else granted = [...offered];
  }
  const prepareParent = () => enableControllers(parent, granted);
  // Without swap accounting (no memory.swap.max) swap may add to the memory limit.
  let swapAccounted = false;
  const lookAround = async (dir: string) => {
    swapAccounted ||= await exists(join(dir, 'memory.swap.max'));
  };
  for (const c of [...granted]) {
    const problem = await probeParent(parent, limitFile[c], prepareParent, lookAround);
    if (problem !== null) {
      granted = granted.filter((g) => g !== c);
      refused.push(`${c} (${parent}: ${problem})`);
    }
  }
  const has = { memory: granted.includes('memory'), pids: granted.includes('pids'), cpu: granted.includes('cpu') };
  const names: Record<Controller, string> = { memory: swapAccounted ? 'memory (swap off)' : 'memory (swap not accounted)', pids: 'pids', cpu: 'cpu (weight)' };
  const why =
    `cgroup v2: ${granted.length > 0 ? `${granted.map((c) => names[c]).join(', ')} in ${parent}` : 'nothing enforceable'}` +
    (moved ? ` (porthole moved itself into ${join(delegated, serverLeafName)} so that ${delegated} may pass controllers on)` : '') +
    (refused.length > 0 ? `; not enforced: ${refused.join(', ')}` : '');

  const enforcedLimits = (limits: SandboxLimits): SandboxLimits => ({
    memoryBytes: has.memory ? limits.memoryBytes : unenforcedLimits.memoryBytes,
    pids: has.pids ? limits.pids : unenforcedLimits.pids,
    cpuWeight: has.cpu ? limits.cpuWeight : unenforcedLimits.cpuWeight,
  });

  return {
    version: 'v2',
    enforceable: has,
    why,

    async create(rawId, limits) {
      const id = checkedSandboxId(rawId);
      checkLimits(limits);
      const leaf = await makeLeaf(parent, id, prepareParent);
      try {
        if (has.memory) {
          await writeValue(join(leaf, 'memory.max'), limits.memoryBytes);
          // Swap must not stretch the limit; the file is absent when the kernel accounts no swap.
          if (await exists(join(leaf, 'memory.swap.max'))) await writeValue(join(leaf, 'memory.swap.max'), 0);
        }
        if (has.pids) await writeValue(join(leaf, 'pids.max'), limits.pids);
        if (has.cpu) await writeValue(join(leaf, 'cpu.weight'), limits.cpuWeight);
      } catch (error) {
        await removeLeaf(leaf, parent).catch(() => {});
        throw error;
      }
      return new V2SandboxCgroup(id, enforcedLimits(limits), leaf, parent, has);
    },

    async open(rawId) {
      const id = checkedSandboxId(rawId);
      const leaf = join(parent, id);
      if (!(await exists(leaf))) return null;
      const [memoryBytes, pids, cpuWeight] = await Promise.all([
        has.memory ? readLimit(join(leaf, 'memory.max')) : unenforcedLimits.memoryBytes,
        has.pids ? readLimit(join(leaf, 'pids.max')) : unenforcedLimits.pids,
        has.cpu ? readLimit(join(leaf, 'cpu.weight')) : unenforcedLimits.cpuWeight,
      ]);
      return new V2SandboxCgroup(id, { memoryBytes, pids, cpuWeight }, leaf, parent, has);
    },

    list: () => listLeaves(parent),
  };
}
