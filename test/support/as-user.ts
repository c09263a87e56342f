import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { stageDirectory } from '../../src/drivers/local/launcher.js';

// Runs a command of this checkout as another (unprivileged) user. The checkout may sit in root's
// 0700 home, which that user cannot enter — as the sandboxes cannot, which is why porthole stages
// its launches (src/drivers/local/launcher.ts). The same here: the command runs in a private mount
// namespace where the checkout is bound at the stage directory, then drops to the user with
// setpriv. Give it paths of the checkout through stagedPath(). Nothing is mounted on the host.

const checkout = fileURLToPath(new URL('../../../', import.meta.url)).replace(/\/$/, '');

/** A path (or file: URL) of this checkout as the command run by runAsUser sees it. */
export function stagedPath(path: string): string {
  if (path.startsWith('file://')) return `file://${stagedPath(fileURLToPath(path))}`;
  return path.startsWith(`${checkout}/`) ? `${stageDirectory()}${path.slice(checkout.length)}` : path;
}

/** Like promisify(execFile)(file, args, {uid, gid}), for a user who cannot reach the checkout by its path. */
export async function runAsUser(
  uid: number,
  file: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv } = {},
): Promise<{ stdout: string; stderr: string }> {
  await mkdir(stageDirectory(), { recursive: true });
  const script = 'mount --bind "$1" "$2" && shift 2 && cd / && exec setpriv --reuid="$RUN_AS_UID" --regid="$RUN_AS_UID" --clear-groups -- "$@"';
  return promisify(execFile)(
    'unshare',
    ['--mount', '--propagation', 'private', '--', '/bin/sh', '-c', script, 'run-as-user', checkout, stageDirectory(), file, ...args],
    {
      env: { ...(options.env ?? process.env), RUN_AS_UID: String(uid) },
    },
  );
}
