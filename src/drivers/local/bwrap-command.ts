// The bubblewrap command line of one sandbox. Kept apart from the driver so the isolation it sets
// up reads in one place. What a sandbox sees inside (paths, /etc, passwd) is ../sandbox-inside.ts,
// shared with the gvisor driver's OCI spec.
import { etcEntries, inside, insideUid } from '../sandbox-inside.js';

export { inside, sandboxGroup, sandboxPasswd } from '../sandbox-inside.js';

/** The file descriptors the driver hands bwrap (0–2 are the log). */
export const bwrapFds = { info: 3, passwd: 4, group: 5, block: 6 } as const;

/** What bwrap binds into the sandbox, as paths bwrap (running as the sandbox uid) can reach. */
export interface BwrapSources {
  /** The sandbox's run directory (sockets, agent config, logs): read-write. */
  readonly run: string;
  /** The directory the server listens in for this sandbox: read-only inside. */
  readonly host: string;
  readonly agentBundle: string;
  readonly clis?: string | undefined;
  readonly demoCli?: string | undefined;
}

export function bwrapArgs(options: { sandboxId: string; sources: BwrapSources; homeMiB: number; tmpMiB: number }): string[] {
  const { sources } = options;
  const etc = etcEntries.flatMap((name) => ['--ro-bind-try', `/etc/${name}`, `/etc/${name}`]);
  const mib = (n: number): string => String(n * 1024 * 1024);
  return [
    ...['--unshare-user', '--uid', String(insideUid), '--gid', String(insideUid)],
    // Its own network namespace: only its own loopback. Nothing of the host's loopback, no route
    // out; the internet only through the server's egress proxy (sources.host/proxy.sock), which the
    // agent serves inside on 127.0.0.1:3128. Each sandbox's CLI callback ports are its own.
    ...['--unshare-net', '--unshare-pid', '--unshare-ipc', '--unshare-uts', '--hostname', 'porthole', '--unshare-cgroup-try'],
    // --new-session: no TIOCSTI into a terminal outside. Never --die-with-parent: sandboxes outlive
    // a server restart so that the next server adopts them (and end themselves after a lease).
    '--new-session',
    '--clearenv',
    ...['--setenv', 'HOME', inside.home, '--setenv', 'USER', 'porthole', '--setenv', 'PATH', '/usr/bin:/bin'],
    ...['--setenv', 'LANG', 'C.UTF-8', '--setenv', 'PORTHOLE_AGENT_CONFIG', inside.agentConfig],
    // Inherited by every process of the sandbox: how the driver finds them when it has no record.
    ...['--setenv', 'PORTHOLE_SANDBOX_ID', options.sandboxId],
    ...['--ro-bind', '/usr', '/usr', '--symlink', 'usr/bin', '/bin', '--symlink', 'usr/sbin', '/sbin'],
    ...['--symlink', 'usr/lib', '/lib', '--symlink', 'usr/lib64', '/lib64'],
    ...['--dir', '/etc', ...etc, '--symlink', '../proc/self/mounts', '/etc/mtab'],
    ...['--ro-bind-data', String(bwrapFds.passwd), '/etc/passwd', '--ro-bind-data', String(bwrapFds.group), '/etc/group'],
    // fontconfig's cache: without it every sandbox rebuilds it on first start.
    ...['--ro-bind-try', '/var/cache/fontconfig', '/var/cache/fontconfig'],
    ...['--proc', '/proc', '--dev', '/dev'],
    // Home and /tmp are size-limited tmpfs: nothing the person writes reaches the host's disk, and
    // their pages count against the sandbox's memory limit. Both vanish with the sandbox.
    ...['--size', mib(options.tmpMiB), '--tmpfs', '/tmp', '--size', mib(options.homeMiB), '--perms', '0700', '--tmpfs', inside.home],
    ...['--bind', sources.run, inside.run, '--ro-bind', sources.host, inside.host],
    ...['--ro-bind', sources.agentBundle, inside.agent],
    // Read-only and optional: a sandbox without them still has its desktop; a login that needs one says so.
    ...(sources.clis ? ['--ro-bind-try', sources.clis, inside.clis] : []),
    ...(sources.demoCli ? ['--ro-bind-try', sources.demoCli, inside.demoCli] : []),
    ...['--chdir', inside.home, '--info-fd', String(bwrapFds.info), '--block-fd', String(bwrapFds.block)],
    '--',
    ...['/usr/bin/node', inside.agent],
  ];
}
