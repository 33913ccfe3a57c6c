/**
 * The pools' `client.query` wrapper (src/db/database.ts) names registered statements and hands
 * pg a callback for `(text)` and `(text, values)`; every other form must reach pg as it came. A
 * transaction's BEGIN is not waited for: it goes out with the statement behind it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Socket } from 'node:net';
import pg from 'pg';
import { createPool, prepared, refusesStartupOptions } from '../../src/db/database.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

let t: TestDatabase;
let pool: pg.Pool;

beforeAll(async () => {
  t = await createTestDatabase();
  pool = createPool(t.url, { max: 1 });
});

afterAll(async () => {
  await pool?.end();
  await t?.drop();
});

/** Collects the process's unhandled rejections until `stop`, which says what came. */
function watchUnhandled(): { stop(): unknown[] } {
  const seen: unknown[] = [];
  const onUnhandled = (reason: unknown) => seen.push(reason);
  process.on('unhandledRejection', onUnhandled);
  return {
    stop() {
      process.off('unhandledRejection', onUnhandled);
      return seen;
    },
  };
}

/** Settles within 2 s or fails: a call form the wrapper mishandles would never settle. */
function settled<T>(p: Promise<T>): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error('did not settle within 2 s')), 2000))]);
}

describe('a pooled client', () => {
  it('answers every call form pg knows, promise and callback alike', async () => {
    const client = await pool.connect();
    try {
      expect((await settled(client.query('select 1 as x'))).rows).toEqual([{ x: 1 }]);
      expect((await settled(client.query('select $1::int as x', [2]))).rows).toEqual([{ x: 2 }]);
      const loose = client.query as unknown as (...args: unknown[]) => Promise<pg.QueryResult>;
      expect((await settled(loose('select $1::int as x', [3], undefined))).rows).toEqual([{ x: 3 }]);
      expect((await settled(client.query({ text: 'select $1::int as x', values: [4] }))).rows).toEqual([{ x: 4 }]);
      const viaCallback = await settled(new Promise<unknown>((resolve, reject) => {
        client.query('select $1::int as x', [5], (error, result) => (error ? reject(error) : resolve(result.rows)));
      }));
      expect(viaCallback).toEqual([{ x: 5 }]);
    } finally {
      client.release();
    }
  });

  it('rejects a failing statement with PostgreSQL\'s error and a stack that leads back here', async () => {
    const client = await pool.connect();
    try {
      const error = await settled(client.query('select * from no_such_table')).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: '42P01' });
      expect((error as Error).stack).toContain('pool.test.ts');
    } finally {
      client.release();
    }
  });

  it('writes a BEGIN with the statement behind it, in one write, and is still a transaction', async () => {
    const client = await pool.connect();
    const stream = (client as unknown as { connection: { stream: Socket } }).connection.stream;
    const writes: number[] = [];
    const write = stream._write.bind(stream);
    const writev = stream._writev!.bind(stream);
    stream._write = (chunk, encoding, cb) => { writes.push(1); write(chunk, encoding, cb); };
    stream._writev = (chunks, cb) => { writes.push(chunks.length); writev(chunks, cb); };
    try {
      await settled(client.query('create table if not exists began (n int)'));
      writes.length = 0;
      expect((await settled(client.query('begin'))).command).toBe('BEGIN');
      expect((await settled(client.query('insert into began values ($1) returning n', [7]))).rows).toEqual([{ n: 7 }]);
      // BEGIN, then the insert's parse, bind, describe, execute and sync: one write.
      expect(writes).toEqual([6]);
      expect((await settled(client.query('select count(*)::int as n from began'))).rows).toEqual([{ n: 1 }]);
      await settled(client.query('rollback'));
      expect((await settled(client.query('select count(*)::int as n from began'))).rows).toEqual([{ n: 0 }]);
      // A statement that fails aborts the transaction, as it would have without the pipeline.
      await settled(client.query('begin'));
      await expect(settled(client.query('select * from no_such_table'))).rejects.toMatchObject({ code: '42P01' });
      await expect(settled(client.query('select 1'))).rejects.toMatchObject({ code: '25P02' });
      await settled(client.query('rollback'));
      expect((await settled(client.query('select 2 as x'))).rows).toEqual([{ x: 2 }]);
    } finally {
      stream._write = write;
      stream._writev = writev;
      client.release();
    }
  });

  it('fails a statement behind a BEGIN that pg refuses before sending, and leaves nothing unhandled', async () => {
    const client = await pool.connect();
    const unhandled = watchUnhandled();
    try {
      const circular: Record<string, unknown> = {};
      circular.self = circular;
      await settled(client.query('begin'));
      await expect(settled(client.query('select $1::jsonb as x', [circular]))).rejects.toThrow(/circular/i);
      await settled(client.query('rollback'));
      expect((await settled(client.query('select 3 as x'))).rows).toEqual([{ x: 3 }]);
      await new Promise((r) => setTimeout(r, 50));
      expect(unhandled.stop()).toEqual([]);
    } finally {
      unhandled.stop();
      client.release();
    }
  });

  it('fails the statement behind a BEGIN that failed, and leaves nothing unhandled', async () => {
    const client = await pool.connect();
    const unhandled = watchUnhandled();
    const admin = new pg.Client({ connectionString: t.url });
    await admin.connect();
    try {
      const { rows: [{ pid }] } = await client.query('select pg_backend_pid() as pid');
      await admin.query('select pg_terminate_backend($1)', [pid]);
      await new Promise((r) => setTimeout(r, 100));
      await settled(client.query('begin')).catch(() => {});
      await expect(settled(client.query('select $1::int as x', [1]))).rejects.toThrow();
      await new Promise((r) => setTimeout(r, 50));
      expect(unhandled.stop()).toEqual([]);
    } finally {
      unhandled.stop();
      await admin.end();
      client.release(true);
    }
  });
});

describe('registered statements', () => {
  it('go by their names, prepared once per connection; unnamed with preparedStatements false', async () => {
    const text = prepared('select $1::int + 1 as n');
    const namesAfterTwoRuns = async (p: pg.Pool) => {
      const client = await p.connect();
      try {
        for (let i = 0; i < 2; i++) expect((await client.query(text, [i])).rows).toEqual([{ n: i + 1 }]);
        return (await client.query('select name from pg_prepared_statements')).rows.map((r: { name: string }) => r.name);
      } finally {
        client.release();
      }
    };
    expect(await namesAfterTwoRuns(pool)).toEqual([expect.stringMatching(/^nudge_\d+$/)]);
    const unnamed = createPool(t.url, { max: 1, preparedStatements: false });
    try {
      expect(await namesAfterTwoRuns(unnamed)).toEqual([]);
    } finally {
      await unnamed.end();
    }
  });
});

describe('a pooler refusing the startup options', () => {
  it('is told by the words of PgBouncer before 1.20 and after, and nothing else', () => {
    expect(refusesStartupOptions('unsupported startup parameter: options')).toBe(true);
    expect(refusesStartupOptions('unsupported startup parameter in options: max_parallel_workers_per_gather')).toBe(true);
    expect(refusesStartupOptions('unsupported startup parameter: extra_float_digits')).toBe(false);
    expect(refusesStartupOptions('connect ECONNREFUSED 127.0.0.1:6432')).toBe(false);
  });
});
