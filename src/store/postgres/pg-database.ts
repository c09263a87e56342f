import pg from 'pg';
import { AppError } from '../../protocol/errors.js';
import type { Store } from '../store.js';
import type { Database, HeldLock, Queryable } from './database.js';
import { SqlStore } from './sql-store.js';

export interface PostgresOptions {
  /**
   * An idle pooled connection broke (the server restarted, the network dropped). The pool has
   * already discarded it; the next call reconnects or fails with STORE_UNAVAILABLE.
   */
  onConnectionError?: (error: Error) => void;
}

// Node socket errors, and SQLSTATEs that mean "the server is not there" rather than "your SQL is
// wrong": admin/crash shutdown, starting up, too many connections, statement_timeout.
const unavailableCodes = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  '57P01',
  '57P02',
  '57P03',
  '53300',
  '57014',
]);

// node-postgres raises these without a code.
const unavailableMessages = /Connection terminated|connection timeout|timeout exceeded when trying to connect|Query read timeout|not queryable/i;

function isConnectionFailure(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && (unavailableCodes.has(code) || code.startsWith('08'))) return true;
  // Node reports a refused connection to a name with several addresses as an AggregateError.
  if (error instanceof AggregateError && error.errors.some(isConnectionFailure)) return true;
  return unavailableMessages.test(error.message);
}

function toStoreError(error: unknown): unknown {
  if (error instanceof AppError || !isConnectionFailure(error)) return error;
  return new AppError('STORE_UNAVAILABLE', { cause: error });
}

class PgDatabase implements Database {
  constructor(private readonly pool: pg.Pool) {}

  async query<Row>(sql: string, params: readonly unknown[] = []): Promise<{ rows: Row[] }> {
    try {
      const result = await this.pool.query(sql, [...params]);
      return { rows: result.rows as Row[] };
    } catch (error) {
      throw toStoreError(error);
    }
  }

  // Without parameters node-postgres uses the simple protocol, which accepts several statements.
  async exec(sql: string): Promise<void> {
    await this.query(sql);
  }

  async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    const client = await this.pool.connect().catch((error: unknown) => {
      throw toStoreError(error);
    });
    // The pool listens for errors only on idle clients: a server dying between two statements
    // of this transaction would otherwise be an unhandled 'error' event and end the process.
    const health: ClientHealth = {};
    const onError = (error: Error) => {
      health.broken = error;
    };
    client.on('error', onError);
    try {
      return await transactionOn(client, fn, health);
    } finally {
      client.off('error', onError);
      // Passing an error makes the pool destroy the connection instead of reusing it.
      client.release(health.broken);
    }
  }

  async holdLock(key: number): Promise<HeldLock | null> {
    const client = await this.pool.connect().catch((error: unknown) => {
      throw toStoreError(error);
    });
    const health: ClientHealth = {};
    const onError = (error: Error) => {
      health.broken = error;
    };
    client.on('error', onError);
    let released = false;
    let isHeld = false;
    const release = async () => {
      if (released) return;
      released = true;
      if (isHeld && !health.broken) await client.query('SELECT pg_advisory_unlock($1)', [key]).catch((error: Error) => (health.broken = error));
      client.off('error', onError);
      client.release(health.broken);
    };
    try {
      const { rows } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [key]);
      isHeld = rows[0]?.ok === true;
      if (!isHeld) {
        await release();
        return null;
      }
    } catch (error) {
      health.broken ??= error as Error;
      await release();
      throw toStoreError(error);
    }
    // Work on a connection that broke, or after release, fails: the lock went with it.
    const guard = <T>(work: () => Promise<T>): Promise<T> => {
      if (health.broken || released) {
        return Promise.reject(new AppError('STORE_UNAVAILABLE', { message: 'The connection holding the lock is gone.', cause: health.broken }));
      }
      return work().catch((error: unknown) => {
        if (isConnectionFailure(error)) health.broken ??= error as Error;
        throw toStoreError(error);
      });
    };
    return {
      db: {
        query: <Row>(sql: string, params: readonly unknown[] = []) => guard(async () => ({ rows: (await client.query(sql, [...params])).rows as Row[] })),
        transaction: (fn) => guard(() => transactionOn(client, fn, health)),
      },
      release,
    };
  }

  close(): Promise<void> {
    return this.pool.end();
  }
}

/** A checked-out connection's failure, once one was seen: it is dropped, not reused. */
interface ClientHealth {
  broken?: Error;
}

/** BEGIN … COMMIT on one checked-out connection (which stays checked out). */
async function transactionOn<T>(client: pg.PoolClient, fn: (tx: Queryable) => Promise<T>, health: ClientHealth): Promise<T> {
  const tx: Queryable = {
    query: async <Row>(sql: string, params: readonly unknown[] = []) => ({
      rows: (await client.query(sql, [...params])).rows as Row[],
    }),
    exec: async (sql: string) => {
      await client.query(sql);
    },
  };
  try {
    await client.query('BEGIN');
    const result = await fn(tx);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    if (isConnectionFailure(error)) health.broken ??= error as Error;
    else await client.query('ROLLBACK').catch((rollbackError: Error) => (health.broken ??= rollbackError));
    throw toStoreError(error);
  }
}

/**
 * A store on a PostgreSQL server. Connects lazily: opening never fails; the first call reports
 * an unreachable server as STORE_UNAVAILABLE. Does not migrate; call `migrate()`.
 */
export async function openPostgres(url: string, options: PostgresOptions = {}): Promise<Store> {
  const pool = new pg.Pool({
    connectionString: url,
    application_name: 'porthole',
    max: 5,
    connectionTimeoutMillis: 3_000,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
    statement_timeout: 10_000,
    // Client-side bound for a server that accepted the connection and then went silent.
    query_timeout: 15_000,
  });
  pool.on('error', (error) => options.onConnectionError?.(error));
  return new SqlStore(new PgDatabase(pool));
}
