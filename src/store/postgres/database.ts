// The seam both backends fill: PGlite and node-postgres each wrap themselves in these two methods,
// so every SQL statement of SqlStore and the migrations runs unchanged on both.

/** One connection or transaction: what every SQL statement runs on. */
export interface Queryable {
  /** One statement with `$n` parameters. */
  query<Row = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<{ rows: Row[] }>;
  /** A script of several statements without parameters (a migration file). */
  exec(sql: string): Promise<void>;
}

export interface Database extends Queryable {
  /** Runs `fn` on one connection inside BEGIN/COMMIT; rolls back and rethrows when it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * Takes the session-level advisory lock `key` on a connection of its own, or null when another
   * connection holds it. The lock lives as long as that connection: work done through the returned
   * database runs on it, so it fails (and the caller lets go) once the lock is lost with it.
   */
  holdLock(key: number): Promise<HeldLock | null>;
  close(): Promise<void>;
}

/** A held advisory lock and the one connection it lives on. */
export interface HeldLock {
  /** Transactions on the lock's own connection. */
  readonly db: Pick<Database, 'transaction' | 'query'>;
  /** Unlocks and gives the connection back (or drops it when broken). Idempotent. */
  release(): Promise<void>;
}
