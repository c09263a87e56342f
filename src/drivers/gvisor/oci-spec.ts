import { chmod, lstat, mkdir, readdir, stat, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { etcEntries, groupFor, inside, passwdFor } from '../sandbox-inside.js';

// The OCI bundle of one gVisor sandbox: config.json and an empty root filesystem that holds only
// the mount points and the /etc/passwd and /etc/group of the sandbox's person. The same view as
// the local driver's bwrap command line (../local/bwrap-command.ts): the host's /usr and the part
// of /etc a desktop reads, read-only; the pinned CLIs and the agent, read-only; a size-limited
// tmpfs home and /tmp; run/ (its own) and host/ (read-only) from the sandbox's directory.

/** What the bundle binds in, as host paths. */
export interface BundleSources {
  readonly run: string;
  readonly host: string;
  readonly agentBundle: string;
  readonly clis?: string | undefined;
  readonly demoCli?: string | undefined;
}

interface Mount {
  readonly destination: string;
  readonly type: string;
  readonly source: string;
  readonly options?: readonly string[];
}

const roBind = (source: string, destination = source): Mount => ({ destination, type: 'bind', source, options: ['rbind', 'ro', 'nosuid', 'nodev'] });

async function kindOf(path: string): Promise<'file' | 'dir' | null> {
  const found = await stat(path).catch(() => null);
  return found === null ? null : found.isDirectory() ? 'dir' : 'file';
}

/**
 * Writes `<bundle>/config.json` and `<bundle>/rootfs/`. The sandbox's person is `uid`: inside as
 * outside, because files the sandbox creates in run/ (its sockets) belong to that uid on the host,
 * where porthole's socket pinning checks it (../pinned-socket.ts).
 */
export async function writeBundle(
  bundle: string,
  options: { sandboxId: string; uid: number; sources: BundleSources; homeMiB: number; tmpMiB: number },
): Promise<void> {
  const { uid, sources } = options;
  const rootfs = join(bundle, 'rootfs');
  const mounts: Mount[] = [
    { destination: '/proc', type: 'proc', source: 'proc' },
    // gVisor fills its own /dev (null, zero, random, tty, …); the pseudo-terminals (xterm) and
    // shared memory (Chromium) get theirs.
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'mode=755'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'nodev', 'mode=1777', `size=${options.tmpMiB}m`] },
    // gVisor 20221219 (Debian 12's runsc) does not implement /dev/tty: opening it fails with EIO,
    // and xterm's child, which checks that it can open /dev/tty once the pty is its controlling
    // terminal, gives up on every pty in turn and never starts the shell or the sign-in CLI. With
    // the host's /dev/null in its place the check passes; a program that opens /dev/tty to prompt
    // reads end of file instead of failing with EIO, which it could not get past either.
    { destination: '/dev/tty', type: 'bind', source: '/dev/null', options: ['rbind', 'rw', 'nosuid'] },
    roBind('/usr'),
  ];
  const mountPoints: { path: string; kind: 'file' | 'dir' }[] = [
    { path: '/proc', kind: 'dir' },
    { path: '/dev', kind: 'dir' },
    { path: '/usr', kind: 'dir' },
  ];
  for (const name of etcEntries) {
    const kind = await kindOf(`/etc/${name}`);
    if (kind === null) continue;
    mounts.push(roBind(`/etc/${name}`));
    mountPoints.push({ path: `/etc/${name}`, kind });
  }
  if ((await kindOf('/var/cache/fontconfig')) === 'dir') {
    mounts.push(roBind('/var/cache/fontconfig'));
    mountPoints.push({ path: '/var/cache/fontconfig', kind: 'dir' });
  }
  // Home and /tmp: tmpfs in the Sentry's memory, counted against the sandbox's cgroup, gone with it.
  mounts.push({ destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777', `size=${options.tmpMiB}m`] });
  mounts.push({
    destination: inside.home,
    type: 'tmpfs',
    source: 'tmpfs',
    options: ['nosuid', 'nodev', 'mode=0700', `uid=${uid}`, `gid=${uid}`, `size=${options.homeMiB}m`],
  });
  mounts.push({ destination: inside.run, type: 'bind', source: sources.run, options: ['rbind', 'rw', 'nosuid', 'nodev'] });
  mounts.push(roBind(sources.host, inside.host));
  mounts.push(roBind(sources.agentBundle, inside.agent));
  mountPoints.push({ path: '/tmp', kind: 'dir' }, { path: inside.home, kind: 'dir' }, { path: inside.run, kind: 'dir' }, { path: inside.host, kind: 'dir' });
  mountPoints.push({ path: inside.agent, kind: 'file' });
  // Read-only and optional, as for the local driver: a login that needs a missing one says so.
  for (const [source, destination] of [
    [sources.clis, inside.clis],
    [sources.demoCli, inside.demoCli],
  ] as const) {
    const kind = source ? await kindOf(source) : null;
    if (!source || kind === null) continue;
    mounts.push(roBind(source, destination));
    mountPoints.push({ path: destination, kind });
  }

  await makeRootfs(rootfs, mountPoints, { 'etc/passwd': passwdFor(uid), 'etc/group': groupFor(uid) });

  const config = ociConfig({
    uid,
    args: ['/usr/bin/node', inside.agent],
    env: [
      `HOME=${inside.home}`,
      'USER=porthole',
      'PATH=/usr/bin:/bin',
      'LANG=C.UTF-8',
      `PORTHOLE_AGENT_CONFIG=${inside.agentConfig}`,
      `PORTHOLE_SANDBOX_ID=${options.sandboxId}`,
    ],
    cwd: inside.home,
    mounts,
  });
  await writeFile(join(bundle, 'config.json'), `${JSON.stringify(config, null, 2)}\n`, { mode: 0o644 });
}

/**
 * A bundle for one short command, for `porthole doctor`'s check that runsc starts a sandbox here
 * (./probe.ts): the same read-only root, /usr and ld.so.cache read-only, and the same unprivileged,
 * capability-less process as a sandbox's, and nothing else (no home, no sockets, no agent).
 */
export async function writeProbeBundle(bundle: string, options: { uid: number; args: readonly string[] }): Promise<void> {
  const rootfs = join(bundle, 'rootfs');
  const mounts: Mount[] = [{ destination: '/proc', type: 'proc', source: 'proc' }, roBind('/usr')];
  const mountPoints: { path: string; kind: 'file' | 'dir' }[] = [
    { path: '/proc', kind: 'dir' },
    { path: '/usr', kind: 'dir' },
  ];
  // The dynamic loader finds /usr/lib/<triplet> through the cache; without it node does not start.
  if ((await kindOf('/etc/ld.so.cache')) === 'file') {
    mounts.push(roBind('/etc/ld.so.cache'));
    mountPoints.push({ path: '/etc/ld.so.cache', kind: 'file' });
  }
  await makeRootfs(rootfs, mountPoints, {});
  const config = ociConfig({ uid: options.uid, args: options.args, env: ['PATH=/usr/bin:/bin', 'LANG=C.UTF-8'], cwd: '/', mounts });
  await writeFile(join(bundle, 'config.json'), `${JSON.stringify(config, null, 2)}\n`, { mode: 0o644 });
}

/**
 * The root filesystem: a file or directory for each mount point, the usual /bin, /lib links into
 * /usr, and `files` (path in the root → content); then every directory 0755 and every file 0644, explicitly. The sandbox's person
 * (not root, inside gVisor as outside) must get through / and read /etc/passwd, and the modes
 * mkdir and writeFile give pass through the server's umask, 077 (src/server/main.ts): with it, /
 * was 0700 and runsc start failed ("failed to find initial working directory: permission denied").
 */
async function makeRootfs(
  rootfs: string,
  mountPoints: readonly { path: string; kind: 'file' | 'dir' }[],
  files: Readonly<Record<string, string>>,
): Promise<void> {
  await mkdir(rootfs, { recursive: true, mode: 0o755 });
  for (const point of mountPoints) {
    const path = join(rootfs, point.path);
    if (point.kind === 'dir') await mkdir(path, { recursive: true, mode: 0o755 });
    else {
      await mkdir(dirname(path), { recursive: true, mode: 0o755 });
      await writeFile(path, '', { mode: 0o644, flag: 'a' });
    }
  }
  await mkdir(join(rootfs, 'etc'), { recursive: true, mode: 0o755 });
  for (const [name, target] of [
    ['bin', 'usr/bin'],
    ['sbin', 'usr/sbin'],
    ['lib', 'usr/lib'],
    ['lib64', 'usr/lib64'],
    ['etc/mtab', '../proc/self/mounts'],
  ] as const) {
    if (!(await lstat(join(rootfs, name)).catch(() => null))) await symlink(target, join(rootfs, name));
  }
  for (const [path, content] of Object.entries(files)) await writeFile(join(rootfs, path), content);
  await chmodTree(rootfs);
}

/** Directories 0755, files 0644, symbolic links left alone (chmod would follow them to the host's files). */
async function chmodTree(dir: string): Promise<void> {
  await chmod(dir, 0o755);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await chmodTree(path);
    else if (entry.isFile()) await chmod(path, 0o644);
  }
}

/** config.json around one process: the person `uid` with no capabilities, on a read-only root, in namespaces of its own. */
function ociConfig(options: { uid: number; args: readonly string[]; env: readonly string[]; cwd: string; mounts: readonly Mount[] }) {
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: options.uid, gid: options.uid },
      args: options.args,
      env: options.env,
      cwd: options.cwd,
      // No capabilities and no way to gain any: the person is an ordinary user of gVisor's kernel.
      capabilities: { bounding: [], effective: [], inheritable: [], permitted: [], ambient: [] },
      noNewPrivileges: true,
    },
    root: { path: 'rootfs', readonly: true },
    hostname: 'porthole',
    mounts: options.mounts,
    linux: {
      namespaces: [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
    },
  };
}
