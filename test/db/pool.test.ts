/**
 * The pools' `client.query` wrapper (src/db/database.ts) names registered statements and hands
 * pg a callback for `(text)` and `(text, values)`; every other form must reach pg as it came.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { createPool } from '../../src/db/database.ts';
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
});
