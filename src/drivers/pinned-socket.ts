import { randomBytes } from 'node:crypto';
import { link, lstat, rename, rm } from 'node:fs/promises';

// The server (root) never connects by a path the sandbox can rename.
//
// A sandbox's servers (Xvnc, the agent) bind their unix sockets in the sandbox's own run
// directory, which the sandbox can write: checking that entry and then connecting to it by path is
// a race the sandbox wins by swapping the entry for a symlink to a host socket between the check
// and the connect (the red team reached a root-only socket about one time in five). Instead the
// server *pins* the socket: it hard-links the entry into a directory only porthole can write, and
// checks the link there — a socket, owned by the sandbox's uid — before it ever connects to it.
// Nothing can change that entry afterwards, and connect() on it reaches the inode that was checked:
//   - link(2) does not follow a symlink (Linux), so a symlink put in place is pinned as a symlink
//     and refused by the check;
//   - a hard link cannot leave its filesystem (EXDEV) nor, under fs.protected_hardlinks, name a
//     file the sandbox does not own, and the sandbox sees no socket of the host or of another
//     sandbox anyway (its own mount, network and user namespaces): a socket inode owned by its uid
//     in its run directory was bound by one of its own processes.
// When the sandbox's server restarts it binds a new inode; the pinned one then refuses (ECONNREFUSED)
// and the caller pins again.

/** The random part of a pin's temporary name, in bytes (hex: twice as many characters). */
const tempRandomBytes = 6;
/** What a pin's temporary name adds to its target's path: `.` and the random part in hex. */
export const pinTempSuffixBytes = 1 + 2 * tempRandomBytes;

export interface SocketPin {
  /** The entry the sandbox's server binds (sandbox-writable directory). */
  readonly source: string;
  /** The only uid whose socket may be pinned. */
  readonly uid: number;
}

/**
 * Pins `pin.source` at `target` (in a directory only this process's user writes). Throws an error
 * with code ENOENT while there is nothing to pin, ENOTSOCK when the entry is not a socket (a
 * symlink, a file), EPERM when it belongs to another uid.
 */
export async function pinSocket(pin: SocketPin, target: string): Promise<void> {
  const temp = `${target}.${randomBytes(tempRandomBytes).toString('hex')}`;
  await link(pin.source, temp);
  try {
    const stats = await lstat(temp);
    if (!stats.isSocket()) throw Object.assign(new Error(`${pin.source} is not a socket (a ${kindOf(stats)} was put in its place)`), { code: 'ENOTSOCK' });
    if (stats.uid !== pin.uid) throw Object.assign(new Error(`${pin.source} belongs to uid ${stats.uid}, not the sandbox's ${pin.uid}`), { code: 'EPERM' });
    await rename(temp, target);
  } finally {
    await rm(temp, { force: true });
  }
}

function kindOf(stats: { isSymbolicLink(): boolean; isFile(): boolean; isDirectory(): boolean }): string {
  return stats.isSymbolicLink() ? 'symlink' : stats.isFile() ? 'file' : stats.isDirectory() ? 'directory' : 'non-socket';
}
