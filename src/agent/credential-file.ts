import { constants } from 'node:fs';
import { lstat, open } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { maxCredentialBytes } from '../protocol/agent.js';

// Reads the credential file a CLI writes into its pinned directory, refusing anything that is not a
// plain file inside that directory: a symlink (the file or any directory between) could point the
// agent at a file outside the login's directory and have it delivered as a "credential".

export type CredentialRead =
  | { readonly kind: 'missing' }
  | { readonly kind: 'refused'; readonly why: string }
  | { readonly kind: 'content'; readonly content: string };

export async function readCredentialFile(dir: string, file: string): Promise<CredentialRead> {
  const rel = relative(dir, join(dir, file));
  if (rel.startsWith('..') || rel === '') return { kind: 'refused', why: `${file} is not inside the login's directory` };
  // Every component from the directory down must be a real directory or, last, a regular file.
  let path = dir;
  const parts = rel.split(sep);
  for (const [index, part] of parts.entries()) {
    path = join(path, part);
    const stat = await lstat(path).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return null;
      throw error;
    });
    if (!stat) return { kind: 'missing' };
    if (stat.isSymbolicLink()) return { kind: 'refused', why: `${relative(dir, path)} is a symbolic link; only a plain file is accepted` };
    const isLast = index === parts.length - 1;
    if (!isLast && !stat.isDirectory()) return { kind: 'refused', why: `${relative(dir, path)} is not a directory` };
    if (isLast && !stat.isFile()) return { kind: 'refused', why: `${file} is not a plain file` };
  }
  // O_NOFOLLOW closes the gap between the lstat and the open for the last component.
  const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return null;
    if (error.code === 'ELOOP') return 'symlink' as const;
    throw error;
  });
  if (handle === null) return { kind: 'missing' };
  if (handle === 'symlink') return { kind: 'refused', why: `${file} is a symbolic link; only a plain file is accepted` };
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) return { kind: 'refused', why: `${file} is not a plain file` };
    if (stat.size > maxCredentialBytes) return { kind: 'refused', why: `${file} is larger than ${maxCredentialBytes} bytes` };
    const buffer = Buffer.alloc(maxCredentialBytes + 1);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    if (bytesRead > maxCredentialBytes) return { kind: 'refused', why: `${file} is larger than ${maxCredentialBytes} bytes` };
    return { kind: 'content', content: buffer.subarray(0, bytesRead).toString('utf8') };
  } finally {
    await handle.close();
  }
}
