/**
 * Behind a pooler that pools by transaction (PgBouncer's transaction mode, README "Connection
 * poolers"): the scan's lock is taken and released on one server connection, so it never outlives
 * the pass, and scans from two processes take turns (the pages read directly, `DATABASE_READ_URL`);
 * and two daemons wholly behind it, with `NUDGE_PREPARED_STATEMENTS=false`, since PgBouncer
 * before 1.21 (Debian 12 has 1.18) keeps no named prepared statement across transactions.
 */
import { sql } from 'kysely';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { silentLogger } from '../src/logger.ts';
import { Runtime } from '../src/runtime.ts';
import { runScan } from '../src/scan.ts';
import { runnableWith } from './helpers/env.ts';
import { closingInThreeDays, createDueNowWorld, moreScans, startDaemon, until, type Daemon } from './helpers/daemon.ts';
import { deliveries, insertContact, insertOpportunity } from './helpers/fixtures.ts';
import { scanLockHolders } from './helpers/scan-lock.ts';
import { pgbouncerBinary, startPgbouncer, type OwnPgbouncer } from './helpers/pgbouncer.ts';
import { createWorld, type World } from './helpers/world.ts';

const binary = pgbouncerBinary();
runnableWith(!!binary, 'the scan behind PgBouncer', 'no pgbouncer; Debian package pgbouncer, or set PGBOUNCER');

let world: World;
let pooler: OwnPgbouncer;
/** Processes whose primary is reached through the pooler, their pages read directly. */
const pooled: Runtime[] = [];

describe.skipIf(!binary)('the scan behind PgBouncer in transaction mode', () => {
  beforeAll(async () => {
    world = await createWorld();
    pooler = await startPgbouncer(binary!, 4);
    for (let i = 0; i < 2; i++) {
      pooled.push(new Runtime(loadConfig({ ...world.env, DATABASE_URL: pooler.through(world.database.url), DATABASE_READ_URL: world.database.url }), silentLogger));
    }
    // Due around the scans' instant: one to send, one without a contact (a suppression written through the pooler).
    const contact = await insertContact(world.database.db, { email: 'ada@customer.test' });
    await insertOpportunity(world.database.db, { closing_date: '2027-01-17', stage: 'proposal', primary_contact_id: contact });
    await insertOpportunity(world.database.db, { closing_date: '2027-01-17', stage: 'proposal' });
  });

  afterAll(async () => {
    for (const rt of pooled) await rt.close();
    await pooler?.stop();
    await world?.close();
  });

  /** Sessions holding the scan's lock, seen on PostgreSQL directly. */
  async function lockHolders(): Promise<number> {
    return (await scanLockHolders(world.database.db)).length;
  }

  /** Other statements through the same pool meanwhile, as a daemon's workers make: the pooler hands each transaction whichever server connection is free. */
  async function traffic(rt: Runtime, until: Promise<unknown>): Promise<void> {
    let done = false;
    void until.finally(() => { done = true; });
    await Promise.all(Array.from({ length: 3 }, async () => {
      while (!done) await sql`select pg_sleep(0.002)`.execute(rt.db);
    }));
  }

  it('leaves no lock behind, pass after pass, with other statements through the pool meanwhile', async () => {
    const { journey } = await world.rt.content();
    for (let pass = 0; pass < 12; pass++) {
      const rt = pooled[pass % 2]!;
      const scan = runScan(rt.scanDeps(journey), new Date('2027-01-14T09:00:00Z'), { waitForLock: false });
      await traffic(rt, scan);
      expect(await scan).toMatchObject({ skipped: false, errors: 0 });
      expect(await lockHolders(), `pass ${pass}`).toBe(0);
    }
    // Its writes went through the pooler too: the suppression of the one without a contact among them.
    const rows = await world.database.db.selectFrom('deliveries').select(['opportunity_id', 'status', 'reason']).execute();
    expect(rows).toContainEqual({ opportunity_id: 2, status: 'suppressed', reason: 'no_contact' });
  }, 60_000);

  it('two processes scanning at once take turns: each holds the lock through its pass, both end, and the lock is gone after', async () => {
    const { journey } = await world.rt.content();
    // Asked while each pass enqueues its jobs: the lock is held (by that pass) then, not released early.
    const heldMidPass: number[] = [];
    const deps = (rt: Runtime) => {
      const base = rt.scanDeps(journey);
      return { ...base, enqueue: async (jobs: Parameters<typeof base.enqueue>[0]) => { heldMidPass.push(await lockHolders()); return base.enqueue(jobs); } };
    };
    for (let round = 0; round < 5; round++) {
      const scans = pooled.map((rt) => runScan(deps(rt), new Date('2027-01-14T09:00:00Z')));
      await Promise.all(pooled.map((rt) => traffic(rt, Promise.all(scans))));
      const summaries = await Promise.all(scans);
      expect(summaries.map((s) => s.skipped)).toEqual([false, false]);
      expect(await lockHolders(), `round ${round}`).toBe(0);
    }
    expect(heldMidPass.length).toBeGreaterThanOrEqual(10);
    expect(new Set(heldMidPass)).toEqual(new Set([1]));
  }, 60_000);
});

describe.skipIf(!binary)('a PgBouncer that refuses startup options, as it does by default', () => {
  let direct: World;
  let strict: OwnPgbouncer;
  let rt: Runtime | null = null;

  beforeAll(async () => {
    direct = await createWorld();
    strict = await startPgbouncer(binary!, 4, false);
  });

  afterAll(async () => {
    await rt?.close();
    await strict?.stop();
    await direct?.close();
  });

  it('has the scan connect without them, saying so once, instead of failing', async () => {
    const c = await insertContact(direct.database.db, { email: 'ada@customer.test', time_zone: 'UTC' });
    await insertOpportunity(direct.database.db, { closing_date: '2027-01-17', stage: 'proposal', primary_contact_id: c });
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => { lines.push(JSON.parse(line) as Record<string, unknown>); } });
    rt = new Runtime(loadConfig({ ...direct.env, DATABASE_READ_URL: strict.through(direct.database.url), NUDGE_PREPARED_STATEMENTS: 'false' }), logger);
    const { journey } = await direct.rt.content();
    for (let pass = 0; pass < 2; pass++) {
      expect(await runScan(rt.scanDeps(journey), new Date('2027-01-14T09:00:00Z'))).toMatchObject({ scanned: 1, errors: 0, skipped: false });
    }
    expect(lines.map((l) => [l.msg, l.err])).toEqual([[expect.stringMatching(/^the connection pooler refuses startup options/), 'unsupported startup parameter: options']]);
  }, 60_000);
});

describe.skipIf(!binary)('two daemons wholly behind PgBouncer in transaction mode, prepared statements off', () => {
  let due: World;
  let bouncer: OwnPgbouncer;
  let daemons: Daemon[] = [];

  beforeAll(async () => {
    due = await createDueNowWorld();
    bouncer = await startPgbouncer(binary!, 8);
  });

  afterAll(async () => {
    for (const d of daemons) if (d.child.exitCode === null) d.child.kill('SIGKILL');
    await bouncer?.stop();
    await due?.close();
  });

  it('send each due email once, record each, and stop cleanly', async () => {
    const n = 150;
    await sql`
      with c as (
        insert into contacts (email, first_name, time_zone)
        select 'r-' || i || '@customer.test', 'R' || i, 'UTC' from generate_series(1, ${n}) as i returning id
      )
      insert into opportunities (title, closing_date, stage, primary_contact_id)
      select 'Deal ' || id, ${closingInThreeDays()}::date, 'proposal', id from c`.execute(due.database.db);
    const env = { ...due.env, DATABASE_URL: bouncer.through(due.database.url), NUDGE_PREPARED_STATEMENTS: 'false', NUDGE_CONCURRENCY: '2' };
    daemons = [startDaemon(env), startDaemon(env)];
    await until(`${n} emails recorded`, async () => (await deliveries(due.database.db)).filter((r) => r.status === 'sent').length >= n, 60_000);
    await moreScans(daemons); // still nothing doubled
    const addresses = due.smtp.received.map((m) => m.envelopeTo[0]!);
    expect(new Set(addresses).size).toBe(n);
    expect(addresses).toHaveLength(n);
    expect((await deliveries(due.database.db)).map((r) => r.status)).toEqual(Array(n).fill('sent'));
    for (const d of daemons) d.child.kill('SIGTERM');
    expect(await Promise.all(daemons.map((d) => d.exited))).toEqual([0, 0]);
    // Nothing failed on the way (a statement PgBouncer could not run, a scan that did not end).
    expect(daemons.flatMap((d) => d.logs).filter((l) => (l.level as number) >= 40)).toEqual([]);
  }, 120_000);
});
