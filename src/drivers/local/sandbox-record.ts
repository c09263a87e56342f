import { randomBytes } from 'node:crypto';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';

// sandbox.json: what a later server process needs to find, judge and destroy a sandbox it did not
// start. Written once, atomically (temp file + rename), after the sandbox's init is known.

export const sandboxRecordSchema = z.object({
  id: z.string(),
  startedAt: z.string(),
  width: z.number().int(),
  height: z.number().int(),
  startUrl: z.string(),
  /** Host uid/gid the sandbox runs as (its own, when porthole runs as root). */
  uid: z.number().int(),
  gid: z.number().int(),
  /** The sandbox's pid-namespace init (bwrap's pid 1), as the host sees it. */
  init: z.object({
    pid: z.number().int(),
    /** /proc/<pid>/stat start time: guards against pid reuse. */
    startTime: z.number().int(),
    /** Inode of its pid namespace: every process of the sandbox shares it. */
    pidNamespace: z.number().int(),
  }),
  /**
   * The agent: the init's one child, which supervises the desktop. The sandbox runs while it runs:
   * bwrap's init reaps until no child is left, so without the agent the desktop would run on
   * unsupervised. Optional so that records written before it was recorded still parse (then the
   * init alone counts).
   */
  agent: z.object({ pid: z.number().int(), startTime: z.number().int() }).optional(),
  /** Version of the server that created it. */
  createdBy: z.string(),
});
export type SandboxRecord = z.infer<typeof sandboxRecordSchema>;

export const recordFile = 'sandbox.json';

export async function writeRecord(dir: string, record: SandboxRecord): Promise<void> {
  const temp = join(dir, `.${recordFile}.${randomBytes(4).toString('hex')}`);
  try {
    await writeFile(temp, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o644 });
    await rename(temp, join(dir, recordFile));
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

/** null when there is no record (never created, being created, destroyed) or it does not parse. */
export async function readRecord(dir: string): Promise<SandboxRecord | null> {
  const text = await readFile(join(dir, recordFile), 'utf8').catch(() => null);
  if (text === null) return null;
  try {
    return sandboxRecordSchema.parse(JSON.parse(text));
  } catch {
    return null;
  }
}
