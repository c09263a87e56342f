import { readFile } from 'node:fs/promises';
import { posix } from 'node:path';

// Where this process sits in each cgroup hierarchy, and where those hierarchies are mounted: the
// two files the kernel gives for it (/proc/self/cgroup and /proc/self/mountinfo), parsed here and
// nowhere else. Pure parsers plus one reader, so the parsing is testable on any host.

/** One line of /proc/self/cgroup: `4:memory:/some/path`, or `0::/path` for the unified (v2) hierarchy. */
export interface CgroupMembership {
  readonly hierarchyId: number;
  /** Controllers bound to that hierarchy (`['cpu', 'cpuacct']`); empty for v2 and for named hierarchies. */
  readonly controllers: readonly string[];
  /** This process's cgroup, relative to the hierarchy's root as this process's cgroup namespace sees it. */
  readonly path: string;
}

/** A cgroup filesystem in /proc/self/mountinfo. */
export interface CgroupMount {
  readonly fsType: 'cgroup' | 'cgroup2';
  readonly mountPoint: string;
  /** The cgroup shown at the mount point: `/` usually, a sub-cgroup for a bind mount into a container. */
  readonly root: string;
  /** Super-block options; for v1 they name the hierarchy's controllers (`rw,cpu,cpuacct`). */
  readonly options: readonly string[];
}

export function parseProcCgroup(text: string): CgroupMembership[] {
  const out: CgroupMembership[] = [];
  for (const line of text.split('\n')) {
    // The path may itself hold colons: split on the first two only.
    const first = line.indexOf(':');
    const second = line.indexOf(':', first + 1);
    if (first < 0 || second < 0) continue;
    const controllers = line.slice(first + 1, second);
    out.push({
      hierarchyId: Number(line.slice(0, first)),
      controllers: controllers === '' ? [] : controllers.split(',').filter((c) => !c.startsWith('name=')),
      path: line.slice(second + 1),
    });
  }
  return out;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

export function parseCgroupMounts(mountinfo: string): CgroupMount[] {
  const out: CgroupMount[] = [];
  for (const line of mountinfo.split('\n')) {
    // `id parent major:minor root mountpoint options [optional fields…] - fstype source superoptions`
    const fields = line.split(' ');
    const dash = fields.indexOf('-', 6);
    if (dash < 0) continue;
    const fsType = fields[dash + 1];
    if (fsType !== 'cgroup' && fsType !== 'cgroup2') continue;
    out.push({
      fsType,
      root: unescapeMountField(fields[3] ?? '/'),
      mountPoint: unescapeMountField(fields[4] ?? ''),
      options: (fields[dash + 3] ?? '').split(','),
    });
  }
  return out;
}

/**
 * The directory of this process's cgroup under `mount`, or null when the mount shows a part of the
 * hierarchy this process is not in (a bind mount of another container's cgroup).
 */
export function ownCgroupDir(mount: CgroupMount, ownPath: string): string | null {
  const root = mount.root === '/' ? '' : mount.root;
  if (ownPath !== root && !ownPath.startsWith(`${root}/`)) return null;
  const dir = posix.join(mount.mountPoint, ownPath.slice(root.length));
  return dir.length > 1 ? dir.replace(/\/+$/, '') : dir;
}

export interface OwnCgroups {
  readonly memberships: readonly CgroupMembership[];
  readonly mounts: readonly CgroupMount[];
}

export async function readOwnCgroups(): Promise<OwnCgroups> {
  const [cgroup, mountinfo] = await Promise.all([readFile('/proc/self/cgroup', 'utf8'), readFile('/proc/self/mountinfo', 'utf8')]);
  return { memberships: parseProcCgroup(cgroup), mounts: parseCgroupMounts(mountinfo) };
}

/** v1: this process's cgroup directory in the hierarchy that carries `controller`, or null. */
export function v1DirOf(own: OwnCgroups, controller: string): string | null {
  const membership = own.memberships.find((m) => m.hierarchyId !== 0 && m.controllers.includes(controller));
  if (!membership) return null;
  for (const mount of own.mounts) {
    if (mount.fsType !== 'cgroup' || !mount.options.includes(controller)) continue;
    const dir = ownCgroupDir(mount, membership.path);
    if (dir !== null) return dir;
  }
  return null;
}

/** v2: the unified hierarchy's mount and this process's path in it, or null when there is none. */
export function v2PlaceOf(own: OwnCgroups): { mount: CgroupMount; path: string } | null {
  const membership = own.memberships.find((m) => m.hierarchyId === 0);
  if (!membership) return null;
  for (const mount of own.mounts) {
    if (mount.fsType === 'cgroup2' && ownCgroupDir(mount, membership.path) !== null) return { mount, path: membership.path };
  }
  return null;
}
