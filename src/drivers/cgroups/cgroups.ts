import { v1Host } from './cgroup-v1.js';
import { v2Host } from './cgroup-v2.js';
import { readOwnCgroups, v2PlaceOf } from './cgroup-mounts.js';
import { checkedSandboxId, checkLimits, noopCgroup, type CgroupHost } from './sandbox-cgroup.js';

// Per-sandbox resource limits: which cgroup version this host runs and what porthole may enforce
// with it. The one entry point; the driver creates a cgroup per sandbox before starting it, adds
// the sandbox's first processes, and asks limitsHit() on each reconcile.
//
// v1 wins on a hybrid host (systemd's "unified" mount beside v1 hierarchies): there the controllers
// live in the v1 hierarchies and the unified one has none.

export type { CgroupHost, CgroupUsage, LimitsHit, SandboxCgroup, SandboxLimits } from './sandbox-cgroup.js';
export { describeLimitsHit, formatBytes } from './sandbox-cgroup.js';

/** A host where porthole enforces nothing: sandboxes still start, `porthole doctor` says why. */
export function noCgroups(why: string): CgroupHost {
  return {
    version: 'none',
    enforceable: { memory: false, pids: false, cpu: false },
    why,
    create: async (id, limits) => {
      const sandboxId = checkedSandboxId(id);
      checkLimits(limits);
      return noopCgroup(sandboxId);
    },
    open: async (id) => {
      checkedSandboxId(id);
      return null;
    },
    list: async () => [],
  };
}

const enforcesAny = (host: CgroupHost) => host.enforceable.memory || host.enforceable.pids || host.enforceable.cpu;

/**
 * Reads this process's cgroups and probes what it may create (a probe directory is made and removed
 * again). On v2 it may enable controllers for porthole's subtree, and move this process into a
 * `porthole-server` leaf to be allowed to (see cgroup-v2.ts). Never throws: what fails is in `why`.
 */
export async function detectCgroups(): Promise<CgroupHost> {
  const uid = process.getuid?.();
  if (uid !== 0) return noCgroups(`porthole runs as uid ${uid}, not root: it cannot create cgroups, so sandboxes run without memory, process or cpu limits`);
  try {
    const own = await readOwnCgroups();
    const v1 = await v1Host(own);
    if (v1) return enforcesAny(v1) ? v1 : noCgroups(v1.why);
    const place = v2PlaceOf(own);
    if (place) {
      const v2 = await v2Host({ mountPoint: place.mount.mountPoint, path: place.path });
      return enforcesAny(v2) ? v2 : noCgroups(v2.why);
    }
    return noCgroups('no cgroup filesystem is mounted where this process can see it (/proc/self/mountinfo)');
  } catch (error) {
    return noCgroups(`reading this process's cgroups failed: ${(error as Error).message}`);
  }
}
