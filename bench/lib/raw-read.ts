/**
 * The raw baseline of every read: the scan's own page queries, captured as the engine compiles
 * them, then run once each through `pg-cursor` with no row limit, fetched in pages of the same
 * size, with nothing done to the rows. "The same rows", by construction.
 */
import { Kysely, PostgresDialect, type CompiledQuery, type KyselyPlugin } from 'kysely';
import pg from 'pg';
import Cursor from 'pg-cursor';
import { createPool, typeParsers, type Db } from '../../src/db/database.ts';
import type { Database } from '../../src/db/schema.ts';

export interface CapturedQuery {
  sql: string;
  parameters: readonly unknown[];
}

/** Every query run through the returned Db is recorded; results come back empty, so a paging loop stops after its first page. */
export function capturingDb(url: string): { db: Db; queries: CapturedQuery[]; destroy(): Promise<void> } {
  const queries: CapturedQuery[] = [];
  const pool = createPool(url, { max: 2, applicationName: 'nudge-bench-capture' });
  const emptyResults: KyselyPlugin = {
    transformQuery: (args) => args.node,
    transformResult: async () => ({ rows: [] }),
  };
  const base = new Kysely<Database>({
    dialect: new PostgresDialect({ pool }),
    log(event) {
      if (event.level === 'query') queries.push({ sql: event.query.sql, parameters: event.query.parameters });
    },
  });
  return { db: base.withPlugin(emptyResults), queries, destroy: () => base.destroy() };
}

/** Records the queries `run` executes on `db` (results are real), e.g. one page query for EXPLAIN. */
export function loggingDb(url: string): { db: Db; last(): CompiledQuery | null; destroy(): Promise<void> } {
  let last: CompiledQuery | null = null;
  const pool = createPool(url, { max: 2, applicationName: 'nudge-bench-explain' });
  const db = new Kysely<Database>({
    dialect: new PostgresDialect({ pool }),
    log(event) {
      if (event.level === 'query') last = event.query;
    },
  });
  return { db, last: () => last, destroy: () => db.destroy() };
}

/** A first-page query with its row limit (its last parameter, `pageSize`) lifted. */
export function unlimited(q: CapturedQuery, pageSize: number): CapturedQuery {
  const last = q.parameters[q.parameters.length - 1];
  if (!/\slimit \$\d+\s*$/i.test(q.sql) || last !== pageSize) {
    throw new Error(`bench: expected a page query ending in "limit $n" with n = ${pageSize}, got: ${q.sql.slice(-80)} / ${String(last)}`);
  }
  return { sql: q.sql, parameters: [...q.parameters.slice(0, -1), 2_147_483_647] };
}

/** A connection of its own, with the engine's type parsers (so rows are parsed as the engine's are). */
export async function rawClient(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, types: typeParsers, application_name: 'nudge-bench-raw' });
  await client.connect();
  return client;
}

/** Reads every row of `queries` through a cursor, `batch` rows at a time. Returns the row count. */
export async function cursorRead(client: pg.Client, queries: readonly CapturedQuery[], batch: number): Promise<number> {
  let rows = 0;
  for (const q of queries) {
    const cursor = client.query(new Cursor(q.sql, [...q.parameters]));
    for (;;) {
      const page = await cursor.read(batch);
      rows += page.length;
      if (page.length < batch) break;
    }
    await cursor.close();
  }
  return rows;
}
