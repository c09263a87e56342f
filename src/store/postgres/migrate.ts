import { readdir, readFile } from 'node:fs/promises';
import { AppError } from '../../protocol/errors.js';
import type { Database, Queryable } from './database.js';

// Resolves to src/store/migrations in the sources and dist/src/store/migrations in the build.
const migrationsDir = new URL('../migrations/', import.meta.url);

// Any constant works as long as every porthole server sharing a database uses the same one.
const migrationLockKey = 0x706f7274; // "port"

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** The numbered `NNN_name.sql` files, in order. */
export async function loadMigrations(): Promise<Migration[]> {
  const migrations: Migration[] = [];
  for (const file of await readdir(migrationsDir)) {
    if (!file.endsWith('.sql')) continue;
    const match = /^(\d+)_[a-z0-9_-]+\.sql$/.exec(file);
    if (!match) {
      throw new AppError('INTERNAL', { message: `Migration file ${file} is not named NNN_name.sql.` });
    }
    const version = Number(match[1]);
    if (migrations.some((m) => m.version === version)) {
      throw new AppError('INTERNAL', { message: `Two migration files have version ${version}.` });
    }
    migrations.push({ version, name: file, sql: await readFile(new URL(file, migrationsDir), 'utf8') });
  }
  return migrations.sort((a, b) => a.version - b.version);
}

/**
 * Applies pending migrations in order, each in its own transaction. Idempotent, and safe when
 * several servers start at once: each step holds a transaction-scoped advisory lock (released
 * by COMMIT, ROLLBACK or a dropped connection) and checks again under it. Returns the versions
 * it applied.
 */
export async function runMigrations(db: Database): Promise<number[]> {
  const migrations = await loadMigrations();
  const done = await db.transaction(async (tx) => {
    await lock(tx);
    await tx.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY,
      name text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    return appliedVersions(tx);
  });

  const applied: number[] = [];
  for (const migration of migrations) {
    if (done.has(migration.version)) continue;
    const didApply = await db.transaction(async (tx) => {
      await lock(tx);
      // Another server may have applied it while this one waited for the lock.
      if ((await appliedVersions(tx)).has(migration.version)) return false;
      await tx.exec(migration.sql);
      await tx.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [migration.version, migration.name]);
      return true;
    });
    if (didApply) applied.push(migration.version);
  }
  return applied;
}

async function lock(tx: Queryable): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock($1)', [migrationLockKey]);
}

async function appliedVersions(tx: Queryable): Promise<Set<number>> {
  const { rows } = await tx.query<{ version: number }>('SELECT version FROM schema_migrations');
  return new Set(rows.map((row) => row.version));
}
