import { isSandboxId, type SandboxId } from '../../protocol/ids.js';

// The seam between a driver and the host's cgroups: what a sandbox may use, the cgroup that holds
// it to that, and the host that makes such cgroups. cgroup-v1.ts and cgroup-v2.ts implement it;
// cgroups.ts picks one. The no-op cgroup here is what a host without usable cgroups gives, so the
// driver has one code path.

export interface SandboxLimits {
  /** Memory of every process in the sandbox together, page cache and tmpfs pages (its home, /tmp) included. */
  readonly memoryBytes: number;
  /** Tasks at most: processes and their threads (the kernel counts both). */
  readonly pids: number;
  /** Share of the CPU under contention, 1..10000; 100 is a default process's share. Not a cap. */
  readonly cpuWeight: number;
}

export interface LimitsHit {
  /** The kernel's OOM killer killed a process of the sandbox because it reached its memory limit. */
  readonly memory: boolean;
  /** A fork or clone in the sandbox failed because it reached its pids limit. */
  readonly pids: boolean;
}

export interface CgroupUsage {
  /** null where this host enforces no memory limit. */
  readonly memoryBytes: number | null;
  readonly pids: number | null;
}

export interface SandboxCgroup {
  readonly id: SandboxId;
  /**
   * What the kernel holds this sandbox to: Infinity for memory or pids, 100 for cpuWeight, where the
   * host cannot enforce that limit. (Infinity becomes null in JSON: keep the requested limits elsewhere.)
   */
  readonly limits: SandboxLimits;
  /**
   * Moves a process (all its threads) into the cgroup; what it forks afterwards stays inside.
   * Memory it touched before stays charged where it was. Throws when the process is gone.
   */
  add(pid: number): Promise<void>;
  usage(): Promise<CgroupUsage>;
  /** Cheap (a few small reads), for the reconciler's every tick. A cgroup already removed hit nothing. */
  limitsHit(): Promise<LimitsHit>;
  /**
   * Removes the cgroup. Idempotent. Kills nothing: throws, naming them, while processes are still
   * inside (the driver ends them first).
   */
  remove(): Promise<void>;
}

export interface CgroupHost {
  readonly version: 'v1' | 'v2' | 'none';
  readonly enforceable: { readonly memory: boolean; readonly pids: boolean; readonly cpu: boolean };
  /** One sentence for `porthole doctor` and the start-up log: what is enforced where, and what is not and why. */
  readonly why: string;
  /**
   * A cgroup for the sandbox with these limits, before any process is in it. Reuses a leftover of
   * the same id (its limits rewritten). Throws on an id that is not a sandbox id, limits out of
   * range, or a cgroup the kernel refuses.
   */
  create(id: string, limits: SandboxLimits): Promise<SandboxCgroup>;
  /** The cgroup of a sandbox started by an earlier server process, or null when it has none. Throws on a bad id. */
  open(id: string): Promise<SandboxCgroup | null>;
  /** Sandbox ids that have a cgroup on this host (to remove leftovers of sandboxes that are gone). */
  list(): Promise<SandboxId[]>;
}

/** Ids become directory names: anything but a sandbox id (`..`, `/`) is refused before any path is built. */
export function checkedSandboxId(id: string): SandboxId {
  if (!isSandboxId(id)) throw new Error(`not a sandbox id: ${JSON.stringify(id)}`);
  return id;
}

export function checkLimits(limits: SandboxLimits): void {
  const problems: string[] = [];
  if (!Number.isSafeInteger(limits.memoryBytes) || limits.memoryBytes < 1024 * 1024)
    problems.push(`memoryBytes ${limits.memoryBytes} (at least 1 MiB, whole bytes)`);
  if (!Number.isSafeInteger(limits.pids) || limits.pids < 1) problems.push(`pids ${limits.pids} (at least 1)`);
  if (!Number.isInteger(limits.cpuWeight) || limits.cpuWeight < 1 || limits.cpuWeight > 10_000) problems.push(`cpuWeight ${limits.cpuWeight} (1..10000)`);
  if (problems.length > 0) throw new Error(`invalid sandbox limits: ${problems.join(', ')}`);
}

/** The limits a host enforces nothing of. */
export const unenforcedLimits: SandboxLimits = Object.freeze({ memoryBytes: Infinity, pids: Infinity, cpuWeight: 100 });

/** What a host without usable cgroups gives: holds nothing, so it never reports a limit hit. */
export function noopCgroup(id: SandboxId): SandboxCgroup {
  return {
    id,
    limits: unenforcedLimits,
    add: async (pid) => {
      if (!Number.isSafeInteger(pid) || pid < 1) throw new Error(`not a pid: ${pid}`);
    },
    usage: async () => ({ memoryBytes: null, pids: null }),
    limitsHit: async () => ({ memory: false, pids: false }),
    remove: async () => {},
  };
}

/** `1 GiB`, `640 MiB`, `1.5 GiB`. */
export function formatBytes(bytes: number): string {
  const gib = bytes / 2 ** 30;
  if (gib >= 1) return `${Number.isInteger(gib) ? gib : gib.toFixed(1)} GiB`;
  return `${Math.round(bytes / 2 ** 20)} MiB`;
}

/**
 * The sentence a session fails with, e.g. "the desktop ran out of memory (1 GiB)"; null when no
 * limit was hit.
 */
export function describeLimitsHit(hit: LimitsHit, limits: SandboxLimits): string | null {
  const parts: string[] = [];
  if (hit.memory) parts.push(`the desktop ran out of memory (${formatBytes(limits.memoryBytes)})`);
  if (hit.pids) parts.push(`the desktop reached its limit of ${limits.pids} processes and threads`);
  return parts.length > 0 ? parts.join(', and ') : null;
}
