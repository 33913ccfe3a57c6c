/**
 * Knowing the moment a transaction's COMMIT has been written to PostgreSQL's socket, before its
 * answer comes back: the worker completes an email (writes its final dot) right then, so that a
 * worker killed between its claim and its email leaves as short a gap as the two writes.
 *
 * `whenCommitWritten(fn, work)` runs `work` (which commits a kysely transaction); when that
 * transaction's COMMIT has gone out, `fn` is called, synchronously after the write. PostgreSQL
 * commits a COMMIT it has received even if the client dies right after; the caller must still
 * await the commit and deal with its failure (the transaction then did not commit).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import {
  CompiledQuery, PostgresDialect, type DatabaseConnection, type Dialect, type Driver, type PostgresDialectConfig,
  type QueryCompiler, type TransactionSettings,
} from 'kysely';

const hooks = new AsyncLocalStorage<{ written: (() => void) | null }>();

/** Runs `work`; `fn` is called once the COMMIT of the transaction it commits is written (if it gets that far). */
export function whenCommitWritten<T>(work: (arm: (fn: () => void) => void) => Promise<T>): Promise<T> {
  const store: { written: (() => void) | null } = { written: null };
  return hooks.run(store, () => work((fn) => { store.written = fn; }));
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

class CommitHookDriver implements Driver {
  constructor(private readonly inner: Driver) {}

  init(): Promise<void> {
    return this.inner.init();
  }

  acquireConnection(): Promise<DatabaseConnection> {
    return this.inner.acquireConnection();
  }

  beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    return this.inner.beginTransaction(connection, settings);
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    const store = hooks.getStore();
    const written = store?.written;
    if (!written) return this.inner.commitTransaction(connection);
    store.written = null;
    // pg writes a query to its socket synchronously when the connection is idle, as it is between
    // the transaction's last statement and its COMMIT.
    const committing = connection.executeQuery(CompiledQuery.raw('commit'));
    written();
    const { rows } = await committing;
    // PostgreSQL answers COMMIT with a ROLLBACK tag when an earlier error aborted the transaction.
    if ((rows[0] as { command?: string } | undefined)?.command === 'ROLLBACK') throw new Error('the transaction was aborted: COMMIT rolled back');
  }

  rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    return this.inner.rollbackTransaction(connection);
  }

  savepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler['compileQuery']): Promise<void> {
    return this.inner.savepoint!(connection, name, compile);
  }

  rollbackToSavepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler['compileQuery']): Promise<void> {
    return this.inner.rollbackToSavepoint!(connection, name, compile);
  }

  releaseSavepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler['compileQuery']): Promise<void> {
    return this.inner.releaseSavepoint!(connection, name, compile);
  }

  releaseConnection(connection: DatabaseConnection): Promise<void> {
    return this.inner.releaseConnection(connection);
  }

  destroy(): Promise<void> {
    return this.inner.destroy();
  }
}
