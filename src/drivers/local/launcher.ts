import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { BwrapSources } from './bwrap-command.js';

// How the driver starts bwrap as the sandbox's uid when the server runs as root, without any path
// of the checkout or the data directory being reachable by that uid (root's home is 0700, and so
// may be PORTHOLE_DATA_DIR).
//
// bwrap runs unprivileged (no setuid bit; it makes its own user namespace), so it resolves its bind
// sources as the sandbox uid, and resolves even `--bind-fd` sources by their path (bwrap 0.8
// readlinks /proc/self/fd/N and walks it: EACCES under /root). So the launch goes through a stage:
//   unshare --mount (a private mount namespace of this one launch, gone with it)
//     → sh: mount a tiny tmpfs on the stage directory (a root-owned, world-searchable directory),
//           bind each source onto an entry of it
//     → setpriv: drop to the sandbox uid/gid, no supplementary groups
//     → bwrap, whose sources are the stage's entries.
// unshare, sh and setpriv each exec the next, so the spawned pid is bwrap's. Nothing is mounted
// in the host's mount namespace and nothing outside the sandbox's own directory is written.

/** The mount point of the stage: on the host an empty directory; in the launch's namespace a tmpfs. */
export function stageDirectory(): string {
  return existsSync('/run') ? '/run/porthole-stage' : '/tmp/porthole-stage';
}

const stageScript = `set -eu
umask 022
uid=$1 gid=$2 stage=$3
shift 3
mount -t tmpfs -o mode=0755,size=64k,nosuid,nodev porthole-stage "$stage"
while [ "$1" != "--" ]; do
  name=$1 source=$2
  shift 2
  [ -e "$source" ] || continue # optional sources (the CLIs) may be absent: bwrap's --ro-bind-try skips them
  if [ -d "$source" ]; then mkdir "$stage/$name"; else : > "$stage/$name"; fi
  mount --bind "$source" "$stage/$name"
done
shift
exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$@"
`;

export interface Launch {
  readonly command: string;
  readonly args: string[];
  /** bwrap's sources as bwrap will see them. */
  readonly sources: BwrapSources;
}

/**
 * The staged launch of `bwrap <args>` for root: `buildArgs` gets the sources as the stage names
 * them. The caller spawns `command args` as root (not as the sandbox uid: the stage needs root).
 */
export function stagedLaunch(options: { uid: number; gid: number; sources: BwrapSources; buildArgs: (sources: BwrapSources) => string[] }): Launch {
  const stage = stageDirectory();
  const pairs: string[] = [];
  const staged: Record<string, string | undefined> = {};
  for (const [name, source] of Object.entries(options.sources) as Array<[keyof BwrapSources, string | undefined]>) {
    if (source === undefined) continue;
    pairs.push(name, source);
    staged[name] = join(stage, name);
  }
  const sources = staged as unknown as BwrapSources;
  return {
    command: 'unshare',
    args: [
      '--mount',
      '--propagation',
      'private',
      '--',
      '/bin/sh',
      '-c',
      stageScript,
      'porthole-launch',
      String(options.uid),
      String(options.gid),
      stage,
      ...pairs,
      '--',
      'bwrap',
      ...options.buildArgs(sources),
    ],
    sources,
  };
}
