/**
 * Knowing the moment a transaction's COMMIT has been written to PostgreSQL's socket, before its
 * answer comes back: the worker completes an email (writes its final dot) right then, so that a
 * worker killed between its claim and its email leaves as short a gap as the two writes.
 *
 * `armCommit(trx, fn)`, inside a kysely transaction: when that transaction's COMMIT has gone out,
 * `fn` is called, synchronously after the write. PostgreSQL commits a COMMIT it has received even
 * if the client dies right after; the caller must still await the commit and deal with its
 * failure (the transaction then did not commit). A transaction that rolls back never calls it.
 *
 * The hook travels with the transaction's connection: `armCommit` runs a marker statement
 * through `trx`, which this dialect's connection keeps instead of sending. (An AsyncLocalStorage
 * did this before; it turned on promise hooks for every promise of the process, about 50 µs of
 * each email's CPU in a profile of the worker.)
 *
 * `runTogether(trx, queries)` goes the same way: a marker the connection runs as several
 * statements written at once (kysely runs a transaction's statements one after another, each
 * waiting for the answer to the one before; the pool's connections pipeline).
 */
import {
  CompiledQuery, PostgresDialect, type DatabaseConnection, type Dialect, type Driver, type PostgresDialectConfig,
  type QueryCompiler, type QueryResult, type TransactionSettings,
} from 'kysely';

/** The hooks of the markers `armCommit` runs, by marker: a marker never reaches PostgreSQL. */
const ARMED = new WeakMap<CompiledQuery, () => void>();

/** Calls `fn` once the COMMIT of the transaction `trx` is written (if it gets that far). */
export async function armCommit(trx: { executeQuery(query: CompiledQuery): Promise<unknown> }, fn: () => void): Promise<void> {
  const marker = CompiledQuery.raw('-- nudge: arm the commit hook (kept by the connection, never sent)');
  ARMED.set(marker, fn);
  await trx.executeQuery(marker);
}

/** Statements to run together, by marker (`runTogether`). */
const TOGETHER = new WeakMap<CompiledQuery, readonly CompiledQuery[]>();

/**
 * Runs `queries` in one round trip, in order, on the connection of `trx` (each its own statement,
 * with its own snapshot): written together, answered together. Their results, in order; the first
 * failure fails the lot.
 */
export async function runTogether(trx: { executeQuery(query: CompiledQuery): Promise<QueryResult<unknown>> }, queries: readonly CompiledQuery[]): Promise<QueryResult<unknown>[]> {
  const marker = CompiledQuery.raw('-- nudge: statements run together (kept by the connection, never sent)');
  TOGETHER.set(marker, queries);
  return (await trx.executeQuery(marker)).rows as QueryResult<unknown>[];
}

/** PostgreSQL through kysely's own dialect, with the commit hook above. */
export function postgresDialect(config: PostgresDialectConfig): Dialect {
  const inner = new PostgresDialect(config);
  return {
    createAdapter: () => inner.createAdapter(),
    createDriver: () => new CommitHookDriver(inner.createDriver()),
    createQueryCompiler: () => inner.createQueryCompiler(),
    createIntrospector: (db) => inner.createIntrospector(db),
  };
}

/** A connection that keeps the hook `armCommit` gives it, for its transaction's COMMIT. */
class HookedConnection implements DatabaseConnection {
  armed: (() => void) | null = null;

  constructor(readonly inner: DatabaseConnection) {}

  executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    const together = TOGETHER.get(query);
    if (together) return this.together(together) as Promise<QueryResult<R>>;
    const hook = ARMED.get(query);
    if (!hook) return this.inner.executeQuery<R>(query);
    this.armed = hook;
    return Promise.resolve({ rows: [] });
  }

  private async together(queries: readonly CompiledQuery[]): Promise<QueryResult<QueryResult<unknown>>> {
    const running = queries.map((q) => this.inner.executeQuery<unknown>(q));
    const results = await Promise.allSettled(running);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    return { rows: results.map((r) => (r as PromiseFulfilledResult<QueryResult<unknown>>).value) };
  }

  streamQuery<R>(query: CompiledQuery, chunkSize?: number): AsyncIterableIterator<QueryResult<R>> {
    return this.inner.streamQuery<R>(query, chunkSize);
  }
}

class CommitHookDriver implements Driver {
  /** One wrapper per pooled connection, for as long as the pool keeps it. */
  private readonly wrappers = new WeakMap<DatabaseConnection, HookedConnection>();

  constructor(private readonly inner: Driver) {}

  init(): Promise<void> {
    return this.inner.init();
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    const connection = await this.inner.acquireConnection();
    let hooked = this.wrappers.get(connection);
    if (!hooked) {
      hooked = new HookedConnection(connection);
      this.wrappers.set(connection, hooked);
    }
    hooked.armed = null;
    return hooked;
  }

  beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    const hooked = connection as HookedConnection;
    hooked.armed = null;
    return this.inner.beginTransaction(hooked.inner, settings);
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    const hooked = connection as HookedConnection;
    const written = hooked.armed;
    if (!written) return this.inner.commitTransaction(hooked.inner);
    hooked.armed = null;
    // pg writes a query to its socket synchronously when the connection is idle, as it is between
    // the transaction's last statement and its COMMIT.
    const committing = hooked.inner.executeQuery(CompiledQuery.raw('commit'));
    written();
    const { rows } = await committing;
    // PostgreSQL answers COMMIT with a ROLLBACK tag when an earlier error aborted the transaction.
    if ((rows[0] as { command?: string } | undefined)?.command === 'ROLLBACK') throw new Error('the transaction was aborted: COMMIT rolled back');
  }

  rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    const hooked = connection as HookedConnection;
    hooked.armed = null;
    return this.inner.rollbackTransaction(hooked.inner);
  }

  savepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler['compileQuery']): Promise<void> {
    return this.inner.savepoint!((connection as HookedConnection).inner, name, compile);
  }

  rollbackToSavepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler['compileQuery']): Promise<void> {
    return this.inner.rollbackToSavepoint!((connection as HookedConnection).inner, name, compile);
  }

  releaseSavepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler['compileQuery']): Promise<void> {
    return this.inner.releaseSavepoint!((connection as HookedConnection).inner, name, compile);
  }

  releaseConnection(connection: DatabaseConnection): Promise<void> {
    const hooked = connection as HookedConnection;
    hooked.armed = null;
    return this.inner.releaseConnection(hooked.inner);
  }

  destroy(): Promise<void> {
    return this.inner.destroy();
  }
}
