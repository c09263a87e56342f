import { createHash, randomBytes } from 'node:crypto';
import { link, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { inspect } from 'node:util';
import { z } from 'zod';
import { AppError } from '../../protocol/errors.js';
import type { Secret } from '../secret.js';

// The master keys that seal stored credentials. Either one key given by the operator
// (PORTHOLE_MASTER_KEY or its _FILE), or a keyring file porthole creates in the data directory on
// first run. Only the file can rotate: porthole cannot replace a key it does not keep. The file
// holds several keys only for the moment of a rotation (see Vault.rotate).

export const keyBytes = 32;

/** One AES-256 key. Its material never prints: JSON and util.inspect show only the id. */
export class MasterKey {
  readonly id: string;
  readonly #material: Buffer;

  constructor(material: Buffer) {
    if (material.length !== keyBytes) {
      throw new AppError('MASTER_KEY_INVALID', { message: `A master key must be ${keyBytes} bytes, not ${material.length}.` });
    }
    this.#material = Buffer.from(material);
    this.id = keyIdOf(this.#material);
  }
  material(): Buffer {
    return this.#material;
  }
  toJSON(): { id: string } {
    return { id: this.id };
  }
  [inspect.custom](): string {
    return `MasterKey(${this.id})`;
  }
}

/**
 * A key's id is a fingerprint of it, so one key has one id wherever it is given (file or
 * environment), and a record sealed under a key this server lacks is named as such rather than
 * failing as "tampered". SHA-256 of a random 256-bit key reveals nothing about the key.
 */
export function keyIdOf(material: Buffer): string {
  return `k_${createHash('sha256').update('porthole master key id\0').update(material).digest('hex').slice(0, 16)}`;
}

/** What opening a sealed record needs: a key by id. */
export interface KeyLookup {
  find(id: string): MasterKey | undefined;
}

const keyringFileSchema = z.object({
  version: z.literal(1),
  current: z.string(),
  keys: z.array(z.object({ id: z.string(), key: z.string() })).min(1),
});

export class Keyring implements KeyLookup {
  #keys: Map<string, MasterKey>;
  #currentId: string;
  #generation = 0;
  /** The keyring file; null when the key came from the environment. */
  readonly #file: string | null;

  private constructor(keys: MasterKey[], currentId: string, file: string | null) {
    this.#keys = new Map(keys.map((key) => [key.id, key]));
    this.#currentId = currentId;
    this.#file = file;
  }

  /** A keyring of one key given by the operator, as the base64 of 32 bytes. Cannot rotate. */
  static fromBase64(secret: Secret): Keyring {
    const text = secret.reveal().trim();
    const material = Buffer.from(text, 'base64');
    // Buffer.from skips characters it does not know: insist that the text was exactly 32 bytes of base64.
    if (material.length !== keyBytes || material.toString('base64') !== text) {
      throw new AppError('MASTER_KEY_INVALID', { message: 'PORTHOLE_MASTER_KEY must be the base64 of 32 random bytes (e.g. openssl rand -base64 32).' });
    }
    return Keyring.fromKey(material);
  }

  static fromKey(material: Buffer): Keyring {
    const key = new MasterKey(material);
    return new Keyring([key], key.id, null);
  }

  /**
   * The keyring file at `path`: created on first run (mode 0600, O_EXCL, so a file planted or
   * raced in first is never overwritten), then read. Throws MASTER_KEY_INSECURE when the file is
   * accessible to group or others, MASTER_KEY_INVALID when it does not parse.
   */
  static async openFile(path: string): Promise<Keyring> {
    try {
      return await Keyring.#load(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    const key = new MasterKey(randomBytes(keyBytes));
    try {
      await writeKeyringFile(path, serialize([key], key.id), { replace: false });
    } catch (error) {
      // Another process created it meanwhile: use theirs.
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    return Keyring.#load(path);
  }

  static async #load(path: string): Promise<Keyring> {
    const info = await stat(path);
    if (!info.isFile()) throw new AppError('MASTER_KEY_INVALID', { message: `The keyring ${path} is not a regular file.` });
    if ((info.mode & 0o077) !== 0) {
      throw new AppError('MASTER_KEY_INSECURE', {
        message: `The keyring ${path} has mode ${(info.mode & 0o777).toString(8).padStart(4, '0')}; porthole requires 0600 (no access for group or others). Run: chmod 600 ${path}`,
        details: { path, mode: (info.mode & 0o777).toString(8) },
      });
    }
    const invalid = (why: string) => new AppError('MASTER_KEY_INVALID', { message: `The keyring ${path} ${why}.`, details: { path } });
    let parsed: z.infer<typeof keyringFileSchema>;
    try {
      parsed = keyringFileSchema.parse(JSON.parse(await readFile(path, 'utf8')));
    } catch {
      // No cause attached: a parse error could quote the file, and the file is key material.
      throw invalid('does not parse as a porthole keyring');
    }
    const keys = parsed.keys.map((entry) => {
      const material = Buffer.from(entry.key, 'base64');
      if (material.length !== keyBytes) throw invalid(`holds a key (${entry.id}) that is not ${keyBytes} bytes`);
      const key = new MasterKey(material);
      if (key.id !== entry.id) throw invalid(`names a key ${entry.id} whose material does not match that id`);
      return key;
    });
    if (!keys.some((key) => key.id === parsed.current)) throw invalid(`names a current key ${parsed.current} it does not hold`);
    return new Keyring(keys, parsed.current, path);
  }

  /** The key new records are sealed with. */
  get current(): MasterKey {
    return this.#keys.get(this.#currentId)!;
  }

  find(id: string): MasterKey | undefined {
    return this.#keys.get(id);
  }

  ids(): string[] {
    return [...this.#keys.keys()];
  }

  /** False when the key came from the environment. */
  get canRotate(): boolean {
    return this.#file !== null;
  }

  /** Changes whenever the set of keys changes: a reader that raced a rotation reads again. */
  get generation(): number {
    return this.#generation;
  }

  /**
   * Generates a key and adds it beside the others, written to the file before it returns (a crash
   * after this loses nothing). The current key does not change.
   */
  async addKey(): Promise<MasterKey> {
    const file = this.#requireFile();
    const key = new MasterKey(randomBytes(keyBytes));
    const keys = [...this.#keys.values(), key];
    await writeKeyringFile(file, serialize(keys, this.#currentId), { replace: true });
    this.#keys = new Map(keys.map((k) => [k.id, k]));
    this.#generation++;
    return key;
  }

  /** Makes `id` the current key and forgets every other one, in the file first. */
  async keepOnly(id: string): Promise<void> {
    const file = this.#requireFile();
    const key = this.#keys.get(id);
    if (!key) throw new AppError('INTERNAL', { message: `The keyring does not hold ${id}.` });
    await writeKeyringFile(file, serialize([key], id), { replace: true });
    this.#keys = new Map([[id, key]]);
    this.#currentId = id;
    this.#generation++;
  }

  #requireFile(): string {
    if (!this.#file) throw new AppError('KEY_ROTATION_UNAVAILABLE');
    return this.#file;
  }

  toJSON(): { current: string; keys: string[] } {
    return { current: this.#currentId, keys: this.ids() };
  }
  [inspect.custom](): string {
    return `Keyring(current ${this.#currentId}, ${this.#keys.size} key${this.#keys.size === 1 ? '' : 's'})`;
  }
}

function serialize(keys: MasterKey[], currentId: string): string {
  const file: z.infer<typeof keyringFileSchema> = {
    version: 1,
    current: currentId,
    keys: keys.map((key) => ({ id: key.id, key: key.material().toString('base64') })),
  };
  return `${JSON.stringify(file, null, 2)}\n`;
}

/**
 * Writes the keyring so that it is never seen half-written: a fresh temp file (O_EXCL, 0600),
 * fsynced, then renamed over the old one, or, for the first one, hard-linked into place (which
 * fails with EEXIST rather than replace a file that appeared meanwhile). The directory is fsynced
 * too: losing a rotation's rename after its database commit would lose every credential.
 */
async function writeKeyringFile(path: string, content: string, options: { replace: boolean }): Promise<void> {
  const temp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  const handle = await open(temp, 'wx', 0o600);
  try {
    await handle.writeFile(content);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    if (options.replace) await rename(temp, path);
    else await link(temp, path);
  } finally {
    await unlink(temp).catch(() => {}); // after a rename it is gone already
  }
  const dir = await open(dirname(path), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
