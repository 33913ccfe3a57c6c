/**
 * src/db/commit-hook.ts: the hook runs once the transaction's COMMIT is on its way to PostgreSQL,
 * before its answer. A process killed (SIGKILL) inside the hook leaves the transaction committed:
 * that is what lets the worker write an email's final dot right after its claim. And
 * `runTogether`: statements sent in one round trip, each still a statement of its own.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CompiledQuery, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { armCommit, runTogether } from '../../src/db/commit-hook.ts';
import { createDb, type Db } from '../../src/db/database.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { until } from '../helpers/daemon.ts';
import { waitingOnLock } from '../helpers/fixtures.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

let t: TestDatabase;
let db: Db;

beforeAll(async () => {
  t = await createTestDatabase();
  db = createDb(t.url, { max: 2 }).db;
  await sql`create table probe (n int)`.execute(db);
});

afterAll(async () => {
  await db?.destroy();
  await t?.drop();
});

/** A child process that inserts `n` in a transaction and SIGKILLs itself inside the hook. */
const CHILD = `
import { CompiledQuery, sql } from 'kysely';
import { createDb } from './src/db/database.ts';
import { armCommit } from './src/db/commit-hook.ts';
const { db } = createDb(process.env.URL);
await db.transaction().execute(async (trx) => {
  await sql\`insert into probe values (\${Number(process.env.N)})\`.execute(trx);
  await armCommit(trx, () => process.kill(process.pid, 'SIGKILL'));
});
console.log('not killed');
`;

function killedAtCommit(url: string, n: number): Promise<{ code: number | null; signal: string | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', CHILD], {
      cwd: REPO, env: { ...process.env, URL: url, N: String(n) }, stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve({ code, signal, out }));
  });
}

describe('armCommit', () => {
  it('calls the hook before the commit is reported, and the commit completes (that the COMMIT went out first is the next test)', async () => {
    const order: string[] = [];
    await db.transaction().execute(async (trx) => {
      await sql`insert into probe values (1)`.execute(trx);
      await armCommit(trx, () => order.push('hook'));
    }).then(() => order.push('committed'));
    expect(order).toEqual(['hook', 'committed']);
    expect((await sql<{ n: number }>`select n from probe where n = 1`.execute(db)).rows).toHaveLength(1);
  });

  it('a transaction that fails before its COMMIT never calls the hook', async () => {
    let called = false;
    await expect(db.transaction().execute(async (trx) => {
      await armCommit(trx, () => { called = true; });
      await sql`insert into no_such_table values (1)`.execute(trx);
    })).rejects.toThrow(/no_such_table/);
    expect(called).toBe(false);
  });

  it('a hook belongs to its transaction: not to the next one on the same connection, nor to another running beside it', async () => {
    const { db: one, pool } = createDb(t.url, { max: 1 });
    try {
      let stale = false;
      await expect(one.transaction().execute(async (trx) => {
        await armCommit(trx, () => { stale = true; });
        throw new Error('given up');
      })).rejects.toThrow('given up');
      // The pool's only connection, next: its COMMIT must not call the hook of the one rolled back.
      await one.transaction().execute(async (trx) => { await sql`insert into probe values (2)`.execute(trx); });
      expect(pool.totalCount).toBe(1);
      expect(stale).toBe(false);
    } finally {
      await one.destroy();
    }
    // Two transactions at once on two connections: each commit calls its own hook only.
    const calls: string[] = [];
    let bothIn!: () => void;
    const together = new Promise<void>((resolve) => { let n = 0; bothIn = () => { if (++n === 2) resolve(); }; });
    const run = (name: string, arm: boolean) => db.transaction().execute(async (trx) => {
      await sql`select 1`.execute(trx);
      if (arm) await armCommit(trx, () => calls.push(name));
      bothIn();
      await together;
    });
    await Promise.all([run('a', true), run('b', false)]);
    expect(calls).toEqual(['a']);
  });

  it('a process killed inside the hook leaves its transaction committed, every time', async () => {
    for (let n = 100; n < 105; n++) {
      const child = await killedAtCommit(t.url, n);
      expect(child).toMatchObject({ signal: 'SIGKILL', out: '' });
    }
    // PostgreSQL finishes a COMMIT it received even though the client is gone; give it a moment.
    const deadline = Date.now() + 5_000;
    let rows: { n: number }[] = [];
    while (Date.now() < deadline) {
      rows = (await sql<{ n: number }>`select n from probe where n >= 100 order by n`.execute(db)).rows;
      if (rows.length === 5) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(rows.map((r) => r.n)).toEqual([100, 101, 102, 103, 104]);
  });
});

describe('runTogether', () => {
  it('answers in order, and each statement sees what committed before it ran, even while the one before it waited', async () => {
    await sql`create table if not exists gate (id int primary key)`.execute(db);
    await sql`insert into gate values (1) on conflict do nothing`.execute(db);
    const { db: other } = createDb(t.url, { max: 1 });
    try {
      let holding!: () => void;
      const held = new Promise<void>((r) => { holding = r; });
      // Another session holds the gate's row, and commits a probe row as it lets go, once the
      // first statement below is seen waiting for the row.
      const crm = other.transaction().execute(async (trx) => {
        await sql`select id from gate where id = 1 for update`.execute(trx);
        holding();
        await until('the first statement to wait on the gate\'s row', async () => (await waitingOnLock(db, 'select id from gate%')) === 1, 10_000);
        await sql`insert into probe values (500)`.execute(trx);
      });
      await held;
      const [first, second] = await db.transaction().execute((trx) => runTogether(trx, [
        CompiledQuery.raw('select id from gate where id = $1 for share', [1]),
        CompiledQuery.raw('select count(*)::int as n from probe where n = $1', [500]),
      ]));
      await crm;
      expect(first!.rows).toEqual([{ id: 1 }]);
      // Read after the first statement got its lock, so after the other session committed.
      expect(second!.rows).toEqual([{ n: 1 }]);
    } finally {
      await other.destroy();
    }
  });

  it('fails with the first failure, and the transaction rolls back', async () => {
    await expect(db.transaction().execute(async (trx) => {
      await sql`insert into probe values (600)`.execute(trx);
      await runTogether(trx, [CompiledQuery.raw('select * from no_such_table'), CompiledQuery.raw('select 1')]);
    })).rejects.toMatchObject({ code: '42P01' });
    expect((await sql`select n from probe where n = 600`.execute(db)).rows).toEqual([]);
  });
});
