import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PGlite, type Transaction } from '@electric-sql/pglite';
import type { Store } from '../store.js';
import type { Database, Queryable } from './database.js';
import { OwnerOnlyNodeFS } from './owner-only-nodefs.js';
import { SqlStore } from './sql-store.js';

function queryable(target: PGlite | Transaction): Queryable {
  return {
    async query<Row>(sql: string, params: readonly unknown[] = []) {
      const { rows } = await target.query<Row>(sql, [...params]);
      return { rows };
    },
    async exec(sql: string) {
      await target.exec(sql);
    },
  };
}

/**
 * The embedded store: PGlite persisted in `<dataDir>/pglite` (created when missing, 0700; its files
 * 0600: owner-only-nodefs.ts). Does not migrate; call `migrate()`. One process at a time may open a
 * data dir.
 */
export async function openPglite(dataDir: string): Promise<Store> {
  const dir = join(dataDir, 'pglite');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const pglite = await PGlite.create({ fs: new OwnerOnlyNodeFS(dir) });
  const database: Database = {
    ...queryable(pglite),
    // PGlite runs one transaction at a time, so a compare-and-set here never waits on a lock.
    transaction: (fn) => pglite.transaction((tx) => fn(queryable(tx))),
    // One process has the data directory: it holds every lock there is.
    holdLock: async () => ({ db: database, release: async () => {} }),
    close: () => pglite.close(),
  };
  return new SqlStore(database);
}
