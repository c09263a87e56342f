// The credential vault on a real PGlite store: sealing, every way a stored record can be wrong,
// rotation, and the keyring file. The store is opened here (not through openPglite) so the tests
// can read and alter the raw rows, as someone with the database but not the key could.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { PGlite, type Transaction } from '@electric-sql/pglite';
import { AppError, type ErrorCode } from '../../src/protocol/errors.js';
import { newSessionId, type SessionId } from '../../src/protocol/ids.js';
import type { Database, Queryable } from '../../src/store/postgres/database.js';
import { SqlStore } from '../../src/store/postgres/sql-store.js';
import { ConfigError, loadConfig } from '../../src/server/config.js';
import { open, seal, tagBytes } from '../../src/server/credentials/envelope.js';
import { Keyring, keyIdOf, MasterKey } from '../../src/server/credentials/keyring.js';
import { Vault } from '../../src/server/credentials/vault.js';
import { Secret } from '../../src/server/secret.js';

let dir = '';
let pglite!: PGlite;
let store!: SqlStore;

function queryable(target: PGlite | Transaction): Queryable {
  return {
    query: async <Row>(sql: string, params: readonly unknown[] = []) => ({ rows: (await target.query<Row>(sql, [...params])).rows }),
    exec: async (sql: string) => void (await target.exec(sql)),
  };
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'porthole-test-vault-'));
  pglite = await PGlite.create();
  const db: Database = {
    ...queryable(pglite),
    transaction: (fn) => pglite.transaction((tx) => fn(queryable(tx))),
    holdLock: async () => ({ db, release: async () => {} }),
    close: () => pglite.close(),
  };
  store = new SqlStore(db);
  await store.migrate();
});
after(async () => {
  await store?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A credential file as a CLI writes it, with markers unique to this call. */
function credentialFile(): { content: string; markers: string[] } {
  const access = `sk-ant-oat01-${randomBytes(12).toString('hex')}`;
  const refresh = `sk-ant-ort01-${randomBytes(12).toString('hex')}`;
  return {
    content: JSON.stringify({ claudeAiOauth: { accessToken: access, refreshToken: refresh, expiresAt: 1_900_000_000_000 } }),
    markers: [access, refresh],
  };
}

const input = (content: string) => ({
  provider: 'claude-code',
  content,
  expiresAt: '2030-03-17T12:00:00.000Z',
  account: 'alice@example.com',
  verification: 'offline-checks-only' as const,
});

async function newSession(): Promise<SessionId> {
  const id = newSessionId();
  await store.createSession({ id, provider: 'claude-code', userId: null });
  return id;
}

let keyringCount = 0;
async function fileKeyring(): Promise<{ keyring: Keyring; path: string }> {
  const path = join(dir, `keyring-${++keyringCount}.json`);
  return { keyring: await Keyring.openFile(path), path };
}

/** Asserts an AppError with that code whose message and details hold none of `secrets`. */
async function expectCode(promise: Promise<unknown>, code: ErrorCode, secrets: string[] = [], message?: RegExp): Promise<AppError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof AppError, `expected AppError ${code}, got ${inspect(error)}`);
    assert.equal(error.code, code, error.message);
    if (message) assert.match(error.message, message);
    const shown = `${error.message} ${JSON.stringify(error.details)} ${inspect(error)}`;
    for (const secret of secrets) assert.ok(!shown.includes(secret), 'the error shows no content');
    return error;
  }
  assert.fail(`expected AppError ${code}, but the call succeeded`);
}

async function alter(sessionId: SessionId, column: 'key_id' | 'nonce' | 'ciphertext' | 'tag', value: unknown): Promise<void> {
  await pglite.query(`UPDATE credentials SET ${column} = $2 WHERE session_id = $1`, [sessionId, value]);
}

async function rawRow(sessionId: SessionId): Promise<{ key_id: string; nonce: Uint8Array; ciphertext: Uint8Array; tag: Uint8Array }> {
  const { rows } = await pglite.query<{ key_id: string; nonce: Uint8Array; ciphertext: Uint8Array; tag: Uint8Array }>(
    'SELECT * FROM credentials WHERE session_id = $1',
    [sessionId],
  );
  return rows[0]!;
}

const flipped = (bytes: Uint8Array, index = 0) => {
  const copy = Buffer.from(bytes);
  copy[index] = copy[index]! ^ 0x01;
  return copy;
};

describe('sealing and opening', () => {
  test('a credential round-trips, and the database holds only ciphertext', async () => {
    const { keyring } = await fileKeyring();
    const vault = new Vault(store, keyring);
    const id = await newSession();
    const { content, markers } = credentialFile();
    assert.deepEqual(await vault.put(id, input(content)), { created: true, hasConflict: false });

    const got = await vault.get(id);
    assert.ok(got);
    const { refreshDueAt, ...rest } = got;
    assert.deepEqual(
      { ...rest, capturedAt: '' },
      { ...input(content), capturedAt: '', keyId: keyring.current.id, state: 'active', refreshedAt: null, refreshError: null },
    );
    // Due before its access token expires (a fifth of the time left, at most 5 min, ±20 %).
    const dueMs = Date.parse(refreshDueAt ?? '');
    const expiresMs = Date.parse(input(content).expiresAt!);
    assert.ok(dueMs < expiresMs && dueMs >= expiresMs - 6 * 60_000, `due ${refreshDueAt}`);
    assert.equal(await vault.get(await newSession()), null);

    const row = await rawRow(id);
    assert.equal(row.nonce.length, 12);
    assert.equal(row.tag.length, tagBytes);
    assert.equal(row.key_id, keyring.current.id);
    const { rows } = await pglite.query<Record<string, unknown>>('SELECT * FROM credentials');
    const dump = Buffer.concat(rows.flatMap((r) => Object.values(r).map((v) => (v instanceof Uint8Array ? Buffer.from(v) : Buffer.from(String(v))))));
    for (const marker of [...markers, content]) assert.equal(dump.indexOf(marker), -1, 'no plaintext in any column');
    const session = await store.getSession(id);
    assert.deepEqual(session?.credential, {
      provider: 'claude-code',
      account: 'alice@example.com',
      capturedAt: got.capturedAt,
      expiresAt: '2030-03-17T12:00:00.000Z',
      verification: 'offline-checks-only',
      state: 'active',
      refreshedAt: null,
      refreshError: null,
    });
  });

  test('two seals of the same content differ (fresh nonce each time)', async () => {
    const key = new MasterKey(randomBytes(32));
    const a = seal(key, 'ses_x', 'same');
    const b = seal(key, 'ses_x', 'same');
    assert.notDeepEqual(a.nonce, b.nonce);
    assert.notDeepEqual(a.ciphertext, b.ciphertext);
  });

  test('put is idempotent per session: the first credential stays, a different one is flagged', async () => {
    const { keyring } = await fileKeyring();
    const vault = new Vault(store, keyring);
    const id = await newSession();
    const first = credentialFile();
    await vault.put(id, input(first.content));
    const before = await rawRow(id);
    assert.deepEqual(await vault.put(id, input(first.content)), { created: false, hasConflict: false }, 'the same content again');
    assert.deepEqual(await rawRow(id), before, 'not re-sealed');
    const second = credentialFile();
    assert.deepEqual(await vault.put(id, input(second.content)), { created: false, hasConflict: true });
    assert.equal((await vault.get(id))?.content, first.content, 'the first one is kept');

    await expectCode(vault.put(newSessionId(), input(first.content)), 'SESSION_NOT_FOUND');
    await expectCode(vault.put(id, { ...input(first.content), expiresAt: 'soon' }), 'VALIDATION_FAILED');
    await expectCode(vault.put(id, input('')), 'VALIDATION_FAILED');
  });
});

describe('a stored record that is not what was sealed does not open, with a clear error', () => {
  let vault!: Vault;
  let keyring!: Keyring;
  let secrets: string[] = [];

  before(async () => {
    ({ keyring } = await fileKeyring());
    vault = new Vault(store, keyring);
  });

  async function stored(): Promise<SessionId> {
    const id = await newSession();
    const { content, markers } = credentialFile();
    secrets = [content, ...markers];
    await vault.put(id, input(content));
    return id;
  }

  test('tampered ciphertext', async () => {
    const id = await stored();
    await alter(id, 'ciphertext', flipped((await rawRow(id)).ciphertext, 20));
    await expectCode(vault.get(id), 'CREDENTIAL_UNREADABLE', secrets, /authentication failed/);
  });

  test('tampered tag', async () => {
    const id = await stored();
    await alter(id, 'tag', flipped((await rawRow(id)).tag, 15));
    await expectCode(vault.get(id), 'CREDENTIAL_UNREADABLE', secrets, /authentication failed/);
  });

  test('tampered nonce', async () => {
    const id = await stored();
    await alter(id, 'nonce', flipped((await rawRow(id)).nonce));
    await expectCode(vault.get(id), 'CREDENTIAL_UNREADABLE', secrets);
  });

  for (const length of [12, 4]) {
    test(`a ${length}-byte GCM tag (the genuine tag, truncated) is refused`, async () => {
      const id = await stored();
      // A truncated GCM tag is a valid shorter tag for the same message: only the length check stops it.
      await alter(id, 'tag', Buffer.from((await rawRow(id)).tag).subarray(0, length));
      await expectCode(vault.get(id), 'CREDENTIAL_UNREADABLE', secrets, new RegExp(`tag is ${length} bytes; porthole requires 16`));
    });
  }

  test('a key id naming another key of the keyring (wrong key id)', async () => {
    const { keyring: two } = await fileKeyring();
    const other = await two.addKey();
    const twoKeys = new Vault(store, two);
    const id = await newSession();
    const { content, markers } = credentialFile();
    await twoKeys.put(id, input(content));
    assert.notEqual(two.current.id, other.id);
    await alter(id, 'key_id', other.id);
    await expectCode(twoKeys.get(id), 'CREDENTIAL_UNREADABLE', [content, ...markers], /names another key/);
  });

  test('a key id the keyring does not hold (unknown key id)', async () => {
    const id = await stored();
    await alter(id, 'key_id', 'k_0000000000000000');
    await expectCode(vault.get(id), 'CREDENTIAL_KEY_UNKNOWN', secrets, /k_0000000000000000/);
    const reopened = new Vault(store, Keyring.fromKey(randomBytes(32)));
    const fresh = await stored();
    await expectCode(reopened.get(fresh), 'CREDENTIAL_KEY_UNKNOWN', secrets, /keyring does not hold/);
    assert.ok((await reopened.missingKeys()).keyIds.includes(keyring.current.id));
  });

  test('a record moved to another session (the session id is associated data)', async () => {
    const id = await stored();
    const other = await newSession();
    await pglite.query(
      `INSERT INTO credentials (session_id, provider, key_id, nonce, ciphertext, tag, account, expires_at, verification)
       SELECT $2, provider, key_id, nonce, ciphertext, tag, account, expires_at, verification FROM credentials WHERE session_id = $1`,
      [id, other],
    );
    await expectCode(vault.get(other), 'CREDENTIAL_UNREADABLE', secrets, new RegExp(other));
    assert.ok(await vault.get(id), 'the original still opens');
  });
});

describe('rotation', () => {
  test('re-encrypts every record under a new key; afterwards the old key alone opens none', async () => {
    const rotationStore = store;
    const { keyring, path } = await fileKeyring();
    const vault = new Vault(rotationStore, keyring);
    // Records of earlier tests (other keys, some tampered) would make this rotation fail: start clean.
    await pglite.query('DELETE FROM credentials');
    const ids: SessionId[] = [];
    const contents = new Map<SessionId, string>();
    for (let i = 0; i < 5; i++) {
      const id = await newSession();
      const { content } = credentialFile();
      await vault.put(id, input(content));
      ids.push(id);
      contents.set(id, content);
    }
    const oldKey = keyring.current;
    const oldRows = await Promise.all(ids.map(rawRow));

    const { keyId, reencrypted } = await vault.rotate();
    assert.equal(reencrypted, 5);
    assert.notEqual(keyId, oldKey.id);
    assert.equal(keyring.current.id, keyId);
    assert.deepEqual(keyring.ids(), [keyId], 'the old key is gone from the keyring');
    const file = JSON.parse(await readFile(path, 'utf8'));
    assert.deepEqual(
      file.keys.map((k: { id: string }) => k.id),
      [keyId],
      'and from the file',
    );
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.deepEqual(
      (await readdir(dir)).filter((f) => f.endsWith('.tmp')),
      [],
      'no temp file left',
    );

    for (const [i, id] of ids.entries()) {
      const got = await vault.get(id);
      assert.equal(got?.content, contents.get(id));
      assert.equal(got?.keyId, keyId);
      assert.notDeepEqual((await rawRow(id)).ciphertext, oldRows[i]!.ciphertext);
    }
    // A fresh process reading the keyring file reads them too.
    const reopened = new Vault(rotationStore, await Keyring.openFile(path));
    for (const id of ids) assert.equal((await reopened.get(id))?.content, contents.get(id));

    // Only the old key: the records name a key it lacks, and even forced to use it they do not open.
    const oldOnly = new Vault(rotationStore, Keyring.fromKey(oldKey.material()));
    for (const id of ids) await expectCode(oldOnly.get(id), 'CREDENTIAL_KEY_UNKNOWN', [contents.get(id)!]);
    const forced = { find: () => oldKey };
    for (const id of ids) {
      const record = await rotationStore.getCredential(id);
      assert.throws(
        () => open(forced, id, record!),
        (error) => error instanceof AppError && error.code === 'CREDENTIAL_UNREADABLE',
      );
    }
  });

  test('puts racing a rotation are serialized: every record is readable afterwards', async () => {
    const { keyring } = await fileKeyring();
    const vault = new Vault(store, keyring);
    await pglite.query('DELETE FROM credentials');
    const ids = await Promise.all(Array.from({ length: 4 }, () => newSession()));
    const contents = ids.map(() => credentialFile().content);
    await vault.put(ids[0]!, input(contents[0]!));
    const results = await Promise.all([
      vault.put(ids[1]!, input(contents[1]!)),
      vault.rotate(),
      vault.put(ids[2]!, input(contents[2]!)),
      vault.rotate(),
      vault.put(ids[3]!, input(contents[3]!)),
    ]);
    assert.equal(keyring.ids().length, 1);
    for (const [i, id] of ids.entries()) assert.equal((await vault.get(id))?.content, contents[i]);
    assert.ok((results[3] as { reencrypted: number }).reencrypted >= 3);
  });

  test('a record that does not open stops the rotation and changes nothing', async () => {
    const { keyring } = await fileKeyring();
    const vault = new Vault(store, keyring);
    await pglite.query('DELETE FROM credentials');
    const good = await newSession();
    const bad = await newSession();
    await vault.put(good, input('{"ok":1}'));
    await vault.put(bad, input('{"ok":2}'));
    await alter(bad, 'tag', flipped((await rawRow(bad)).tag));
    const current = keyring.current.id;
    const before = await rawRow(good);
    await expectCode(vault.rotate(), 'CREDENTIAL_UNREADABLE', [], new RegExp(bad));
    assert.deepEqual(await rawRow(good), before, 'rolled back');
    assert.equal(keyring.current.id, current, 'the current key is unchanged');
    assert.equal((await vault.get(good))?.content, '{"ok":1}');
    // The unused new key stays in the keyring until a rotation succeeds.
    await pglite.query('DELETE FROM credentials WHERE session_id = $1', [bad]);
    const { keyId } = await vault.rotate();
    assert.deepEqual(keyring.ids(), [keyId]);
    assert.equal((await vault.get(good))?.content, '{"ok":1}');
  });

  test('a key given as PORTHOLE_MASTER_KEY cannot be rotated by porthole', async () => {
    const vault = new Vault(store, Keyring.fromBase64(new Secret(randomBytes(32).toString('base64'))));
    await expectCode(vault.rotate(), 'KEY_ROTATION_UNAVAILABLE');
  });
});

describe('the keyring file and the master key', () => {
  test('is created on first run with mode 0600 and read back with the same key', async () => {
    const path = join(dir, 'first-run.json');
    const first = await Keyring.openFile(path);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    const again = await Keyring.openFile(path);
    assert.equal(again.current.id, first.current.id);
    assert.deepEqual(again.current.material(), first.current.material());
    assert.equal(first.current.id, keyIdOf(first.current.material()));
  });

  test('two servers starting at once end up with one key', async () => {
    const path = join(dir, 'race.json');
    const keyrings = await Promise.all(Array.from({ length: 5 }, () => Keyring.openFile(path)));
    assert.equal(new Set(keyrings.map((k) => k.current.id)).size, 1);
  });

  test('a keyring file readable by group or others is refused with a clear message', async () => {
    const path = join(dir, 'loose.json');
    await Keyring.openFile(path);
    for (const mode of [0o644, 0o640, 0o604, 0o660]) {
      await chmod(path, mode);
      const error = await expectCode(Keyring.openFile(path), 'MASTER_KEY_INSECURE');
      assert.match(error.message, new RegExp(`mode 0${mode.toString(8)}; porthole requires 0600`));
      assert.match(error.message, /chmod 600/);
    }
    await chmod(path, 0o600);
    await Keyring.openFile(path);
  });

  test('a keyring file that does not parse is refused, without quoting it', async () => {
    const path = join(dir, 'garbage.json');
    await writeFile(path, 'not json but maybe a secret', { mode: 0o600 });
    const error = await expectCode(Keyring.openFile(path), 'MASTER_KEY_INVALID', ['maybe a secret']);
    assert.equal(error.cause, undefined);
    const tampered = join(dir, 'mismatch.json');
    await Keyring.openFile(tampered);
    const file = JSON.parse(await readFile(tampered, 'utf8'));
    file.keys[0].key = randomBytes(32).toString('base64');
    await writeFile(tampered, JSON.stringify(file));
    await expectCode(Keyring.openFile(tampered), 'MASTER_KEY_INVALID', [], /does not match that id/);
  });

  test('key material never prints', async () => {
    const { keyring, path } = await fileKeyring();
    const material = keyring.current.material().toString('base64');
    assert.ok((await readFile(path, 'utf8')).includes(material), 'sanity: the file does hold it');
    for (const shown of [
      inspect(keyring),
      inspect(keyring.current),
      JSON.stringify(keyring),
      JSON.stringify({ key: keyring.current }),
      String(keyring.current),
    ]) {
      assert.ok(!shown.includes(material), shown);
    }
  });

  test('PORTHOLE_MASTER_KEY: the base64 of 32 bytes, also from a file; anything else is a config error that does not echo it', async () => {
    const key = randomBytes(32).toString('base64');
    const config = loadConfig({ PORTHOLE_MASTER_KEY: key });
    assert.equal(config.masterKey?.reveal(), key);
    assert.ok(!JSON.stringify(config).includes(key));
    assert.equal(
      Keyring.fromBase64(config.masterKey!).current.id,
      keyIdOf(Buffer.from(key, 'base64')),
      'the id is the key fingerprint: stable across restarts',
    );
    assert.equal(loadConfig({}).masterKey, null);

    const file = join(dir, 'master-key');
    await writeFile(file, `${key}\n`, { mode: 0o600 });
    assert.equal(loadConfig({ PORTHOLE_MASTER_KEY_FILE: file }).masterKey?.reveal(), key);

    for (const bad of [
      randomBytes(31).toString('base64'),
      randomBytes(33).toString('base64'),
      randomBytes(32).toString('base64url'),
      'x'.repeat(44),
      `${key}AA`,
    ]) {
      assert.throws(
        () => loadConfig({ PORTHOLE_MASTER_KEY: bad }),
        (error) =>
          error instanceof ConfigError && /PORTHOLE_MASTER_KEY: must be the base64 of 32 random bytes/.test(error.message) && !error.message.includes(bad),
      );
    }
    await expectCode(
      Promise.resolve().then(() => Keyring.fromBase64(new Secret('c2hvcnQ='))),
      'MASTER_KEY_INVALID',
    );
  });
});
