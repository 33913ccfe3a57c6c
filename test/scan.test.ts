/**
 * The scheduler pass over real rows with the shipped journey (14, 7 and 3 days before the closing
 * date, a proposal follow-up, an owner reminder the day after a missed date).
 */
import { sql } from 'kysely';
import { pino } from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createDb } from '../src/db/database.ts';
import { runScan, SCAN_LOCK } from '../src/scan.ts';
import { closingDateSpans, daySpans, forEachScanPage, type ScanPage } from '../src/scan-pages.ts';
import { addDays } from '../src/journey/time.ts';
import { silentLogger } from '../src/logger.ts';
import type { DeliverJob } from '../src/queue/queues.ts';
import { createTestDatabase } from './helpers/database.ts';
import { deliveries, insertContact, insertOpportunity } from './helpers/fixtures.ts';
import { scanLockHolders } from './helpers/scan-lock.ts';
import { createWorld, type World } from './helpers/world.ts';

let world: World;

beforeAll(async () => {
  world = await createWorld();
});

afterAll(async () => {
  await world?.close();
});

beforeEach(() => world.reset());

const db = () => world.database.db;

describe('keyset pages', () => {
  it('visit every open opportunity once whatever the page size, and skip closed ones', async () => {
    const ids: number[] = [];
    for (let i = 0; i < 9; i++) {
      const c = await insertContact(db(), { time_zone: 'UTC' });
      // Several opportunities share a closing date, so the id half of the cursor matters.
      ids.push(await insertOpportunity(db(), { closing_date: i < 5 ? '2027-01-17' : '2027-01-24', stage: 'proposal', primary_contact_id: c }));
    }
    await insertOpportunity(db(), { closing_date: '2027-01-17', stage: 'won' });
    const jobs: DeliverJob[] = [];
    const summary = await runScan({ db: db(), journey: (await world.rt.content()).journey, logger: silentLogger,
      enqueue: async (batch) => { jobs.push(...batch.map((b) => b.data)); return batch.length; } }, new Date('2027-01-14T09:00:00Z'), { pageSize: 2 });
    expect(summary.scanned).toBe(9);
    // 2027-01-17 - 3 days and 2027-01-24 - 10 days: only the first five are due (3 days before).
    expect(jobs.map((j) => j.opportunityId).sort((a, b) => a - b)).toEqual(ids.slice(0, 5));
    expect(jobs.every((j) => j.stepId === 'closing-in-3-days' && j.closingDate === '2027-01-17')).toBe(true);
  });
});

describe('chains of pages', () => {
  // At 2027-01-14T09:00Z the shipped journey reads closing days 2027-01-09 to 2027-01-30 (with two
  // chains, in four spans: to 01-13, 01-19, 01-24 and 01-30, each a chain), and the proposals
  // that entered their stage since 2027-01-07, another chain.
  const now = new Date('2027-01-14T09:00:00Z');

  it('cut the closing days into spans that cover each day once, none empty', async () => {
    const journey = (await world.rt.content()).journey;
    expect(closingDateSpans(journey, now, { chains: 2 })).toEqual([
      { from: '2027-01-09', to: '2027-01-13' }, { from: '2027-01-14', to: '2027-01-19' },
      { from: '2027-01-20', to: '2027-01-24' }, { from: '2027-01-25', to: '2027-01-30' },
    ]);
    expect(closingDateSpans(journey, now, { chains: 1 })).toEqual([{ from: '2027-01-09', to: '2027-01-30' }]);
    expect(daySpans('2027-01-09', '2027-01-09', 4)).toEqual([{ from: '2027-01-09', to: '2027-01-09' }]);
    expect(daySpans('2027-01-09', '2027-01-11', 4)).toEqual(['09', '10', '11'].map((d) => ({ from: `2027-01-${d}`, to: `2027-01-${d}` })));
    for (const [days, count] of [[7, 3], [8, 4], [22, 4], [100, 8], [5, 5]] as const) {
      const spans = daySpans('2027-01-01', addDays('2027-01-01', days - 1), count);
      expect(spans).toHaveLength(count);
      expect(spans[0]!.from).toBe('2027-01-01');
      expect(spans[spans.length - 1]!.to).toBe(addDays('2027-01-01', days - 1));
      for (const [i, s] of spans.entries()) {
        expect(s.from <= s.to).toBe(true);
        if (i > 0) expect(s.from).toBe(addDays(spans[i - 1]!.to, 1));
      }
    }
  });

  async function spreadOverDays(): Promise<{ closing: number[]; entered: number[] }> {
    const closing: number[] = [];
    const entered: number[] = [];
    const days = ['2027-01-09', '2027-01-12', '2027-01-17', '2027-01-20', '2027-01-24', '2027-01-30'];
    for (const [i, day] of days.entries()) {
      // Three on most days (the id half of the cursor matters), one on the last: pages end mid-day and on the day's end.
      for (let n = 0; n < (i === days.length - 1 ? 1 : 3); n++) {
        const stage = n === 0 ? 'proposal' : 'negotiation';
        const id = await insertOpportunity(db(), { closing_date: day, stage, stage_entered_at: new Date('2027-01-13T10:00:00Z') });
        closing.push(id);
        if (stage === 'proposal') entered.push(id);
      }
    }
    // Outside the closing days read, but entered proposal in the stage-entered pass's range, before the others.
    entered.unshift(await insertOpportunity(db(), { closing_date: '2027-03-01', stage: 'proposal', stage_entered_at: new Date('2027-01-12T10:00:00Z') }));
    // Out of every range.
    await insertOpportunity(db(), { closing_date: '2027-01-08', stage: 'proposal', stage_entered_at: new Date('2026-12-01T10:00:00Z') });
    await insertOpportunity(db(), { closing_date: '2027-01-31', stage: 'qualification' });
    return { closing, entered };
  }

  async function pagesOf(chains: number): Promise<ScanPage[]> {
    const pages: ScanPage[] = [];
    let running = 0;
    let overlapped = false;
    let second!: () => void;
    const secondStarted = new Promise<void>((r) => { second = r; });
    await forEachScanPage(db(), (await world.rt.content()).journey, now, { pageSize: 2, chains }, async (page) => {
      running += 1;
      overlapped ||= running > 1;
      if (running > 1) second();
      pages.push(page);
      // With chains side by side, the first page waits (up to 5 s, on a loaded machine) for another to start.
      if (chains > 1 && pages.length === 1) await Promise.race([secondStarted, new Promise((r) => setTimeout(r, 5_000))]);
      running -= 1;
    });
    // One chain at a time never overlaps; two do.
    expect(overlapped).toBe(chains > 1);
    return pages;
  }

  const ids = (pages: ScanPage[], pass: ScanPage['pass']) => pages.filter((p) => p.pass === pass).flatMap((p) => p.rows.map((r) => r.id));

  it('read side by side, visit every opportunity of each pass once, each page in the order of its pass', async () => {
    const { closing, entered } = await spreadOverDays();
    const pages = await pagesOf(2);
    expect(ids(pages, 'closingDate').sort((a, b) => a - b)).toEqual(closing);
    expect(ids(pages, 'stageEntered').sort((a, b) => a - b)).toEqual([...entered].sort((a, b) => a - b));
    // Days with no opportunity give no page.
    expect(pages.every((p) => p.rows.length > 0)).toBe(true);
    // A span holds several days: a page runs on from 01-09 into 01-12.
    expect(pages.some((p) => p.pass === 'closingDate' && new Set(p.rows.map((r) => r.closing_date)).size > 1)).toBe(true);
    // Ids were given in closing-day order: within a page, (closing_date, id) order is id order.
    for (const page of pages.filter((p) => p.pass === 'closingDate')) {
      expect(page.rows.map((r) => r.id)).toEqual([...page.rows.map((r) => r.id)].sort((a, b) => a - b));
    }
  });

  it('read one at a time, come in the order of the passes: closing date then id, then the stage-entered pass', async () => {
    const { closing, entered } = await spreadOverDays();
    const pages = await pagesOf(1);
    // The closing-date pass is one chain: its pages run on from one day into the next.
    expect(pages.some((p) => p.pass === 'closingDate' && new Set(p.rows.map((r) => r.closing_date)).size > 1)).toBe(true);
    // Ids were given in closing-day order, so the closing-date pass's order is the ids' order;
    // the stage-entered pass's is (stage_entered_at, id).
    expect(pages.flatMap((p) => p.rows.map((r) => r.id))).toEqual([...closing, ...entered]);
    expect(pages.map((p) => p.pass).lastIndexOf('closingDate')).toBeLessThan(pages.map((p) => p.pass).indexOf('stageEntered'));
  });

  it('a failure in one chain stops the other before its next page, and the pass throws it once both have stopped', async () => {
    // Two closing days of five pages each, in two spans (to 01-19, and from 01-20): two chains,
    // each with pages still to come.
    for (const day of ['2027-01-17', '2027-01-20']) {
      for (let n = 0; n < 10; n++) await insertOpportunity(db(), { closing_date: day, stage: 'negotiation' });
    }
    let after = 0;
    let failed = false;
    let running = 0;
    const pass = forEachScanPage(db(), (await world.rt.content()).journey, now, { pageSize: 2, chains: 2 }, async () => {
      if (failed) after += 1;
      running += 1;
      await new Promise((r) => setTimeout(r, 5));
      running -= 1;
      if (!failed) {
        failed = true;
        throw new Error('page failed');
      }
    });
    await expect(pass).rejects.toThrow('page failed');
    // The other chain may have been in the middle of one page; none began once that one had returned.
    expect(after).toBeLessThanOrEqual(1);
    expect(running).toBe(0);
  });
});

describe('the scan\'s lock', () => {
  /** The sessions holding the scan's lock: their state, snapshot and transaction id. */
  const lockHolders = async () => (await scanLockHolders(db())).map(({ pid: _, ...holder }) => holder);

  it('is held by a transaction of its own for the whole pass, which holds back no vacuum, and is gone after', async () => {
    for (let i = 0; i < 3; i++) {
      const c = await insertContact(db(), { time_zone: 'UTC' });
      await insertOpportunity(db(), { closing_date: '2027-01-17', stage: 'proposal', primary_contact_id: c });
    }
    // Asked while each page's jobs are enqueued (the pass waits for them): a session idle in its
    // transaction between the pass's statements, with no snapshot (no xmin) and no transaction id.
    const seen: unknown[] = [];
    const summary = await runScan({
      db: db(), journey: (await world.rt.content()).journey, logger: silentLogger,
      enqueue: async (jobs) => { seen.push(await lockHolders()); return jobs.length; },
    }, new Date('2027-01-14T09:00:00Z'), { pageSize: 1 });
    expect(summary.enqueued).toBe(3);
    expect(seen).toEqual(Array(3).fill([{ state: 'idle in transaction', backend_xmin: null, backend_xid: null }]));
    expect(await lockHolders()).toEqual([]);
  });

  it('is counted per database: a scan holding it in another database (another test file\'s, another installation\'s) is not this one\'s holder', async () => {
    const other = await createTestDatabase();
    try {
      await other.db.transaction().execute(async (trx) => {
        await sql`select pg_advisory_xact_lock(hashtextextended(${SCAN_LOCK}, 0))`.execute(trx);
        expect(await scanLockHolders(other.db)).toHaveLength(1);
        expect(await scanLockHolders(db())).toEqual([]);
        // And this database's scan takes its own lock meanwhile, not waiting for the other's.
        const summary = await runScan({ db: db(), journey: (await world.rt.content()).journey, logger: silentLogger, enqueue: async (jobs) => jobs.length },
          new Date('2027-01-14T09:00:00Z'), { waitForLock: false });
        expect(summary.skipped).toBe(false);
      });
    } finally {
      await other.drop();
    }
  });

  it('holds no snapshot where the server\'s default isolation is repeatable read', async () => {
    const c = await insertContact(db(), { time_zone: 'UTC' });
    await insertOpportunity(db(), { closing_date: '2027-01-17', stage: 'proposal', primary_contact_id: c });
    const name = sql.id(world.database.name);
    await sql`alter database ${name} set default_transaction_isolation = 'repeatable read'`.execute(db());
    const { db: strict, pool } = createDb(world.database.url);
    try {
      const seen: unknown[] = [];
      await runScan({
        db: strict, journey: (await world.rt.content()).journey, logger: silentLogger,
        enqueue: async (jobs) => { seen.push(await lockHolders()); return jobs.length; },
      }, new Date('2027-01-14T09:00:00Z'));
      expect(seen).toEqual([[{ state: 'idle in transaction', backend_xmin: null, backend_xid: null }]]);
    } finally {
      await pool.end();
      await sql`alter database ${name} reset default_transaction_isolation`.execute(db());
    }
  });

  it('a pass whose lock\'s connection is lost completes and is not reported failed; a pass that fails reports its own error', async () => {
    const c = await insertContact(db(), { time_zone: 'UTC' });
    await insertOpportunity(db(), { closing_date: '2027-01-17', stage: 'proposal', primary_contact_id: c });
    const journey = (await world.rt.content()).journey;
    const endHolder = async () => {
      for (const { pid } of await scanLockHolders(db())) await sql`select pg_terminate_backend(${pid})`.execute(db());
    };
    const lines: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => { lines.push((JSON.parse(line) as { msg: string }).msg); } });
    const done = await runScan({ db: db(), journey, logger, enqueue: async (jobs) => { await endHolder(); return jobs.length; } }, new Date('2027-01-14T09:00:00Z'));
    expect(done).toMatchObject({ enqueued: 1, skipped: false });
    expect(lines).toEqual(['scan: the connection holding its lock was lost during the pass; the pass itself completed']);
    await expect(runScan({ db: db(), journey, logger, enqueue: async () => { await endHolder(); throw new Error('the queue refused'); } }, new Date('2027-01-14T09:00:00Z')))
      .rejects.toThrow('the queue refused');
  });

  it('outlasts a server\'s idle_in_transaction_session_timeout shorter than the pass', async () => {
    const c = await insertContact(db(), { time_zone: 'UTC' });
    await insertOpportunity(db(), { closing_date: '2027-01-17', stage: 'proposal', primary_contact_id: c });
    await insertOpportunity(db(), { closing_date: '2027-01-17', stage: 'proposal', primary_contact_id: c });
    const name = sql.id(world.database.name);
    await sql`alter database ${name} set idle_in_transaction_session_timeout = '100ms'`.execute(db());
    // Connections opened after the setting: theirs is 100 ms.
    const { db: strict, pool } = createDb(world.database.url);
    try {
      const summary = await runScan({
        db: strict, journey: (await world.rt.content()).journey, logger: silentLogger,
        // Each page's jobs take longer than the timeout: the lock's transaction sits idle meanwhile.
        enqueue: async (jobs) => { await new Promise((r) => setTimeout(r, 300)); return jobs.length; },
      }, new Date('2027-01-14T09:00:00Z'), { pageSize: 1 });
      expect(summary).toMatchObject({ enqueued: 2, errors: 0, skipped: false });
    } finally {
      await pool.end();
      await sql`alter database ${name} reset idle_in_transaction_session_timeout`.execute(db());
    }
  });
});

describe('stage-entered pages', () => {
  it('finish when a bulk update gave many opportunities the same stage_entered_at', async () => {
    for (let i = 0; i < 5; i++) await insertOpportunity(db(), { closing_date: '2027-09-30', stage: 'qualification', primary_contact_id: await insertContact(db()) });
    // One statement: every row gets the same now(), to the microsecond.
    await sql`update opportunities set stage = 'proposal'`.execute(db());
    const entered = await db().selectFrom('opportunities').select(sql<string>`stage_entered_at::text`.as('t')).distinct().execute();
    expect(entered).toHaveLength(1);
    const jobs: DeliverJob[] = [];
    const now = new Date(Date.now() + 2 * 86_400_000);
    const summary = await runScan({ db: db(), journey: (await world.rt.content()).journey, logger: silentLogger,
      enqueue: async (batch) => { jobs.push(...batch.map((b) => b.data)); return batch.length; } }, now, { pageSize: 2 });
    expect(summary.scanned).toBe(5);
    expect(new Set(jobs.map((j) => j.opportunityId)).size).toBe(jobs.length);
  });
});

describe('catch-up', () => {
  it('an opportunity created three days before its closing date gets only the 3-day email; the others are expired', async () => {
    const c = await insertContact(db(), { email: 'late@customer.test', time_zone: 'UTC' });
    const id = await insertOpportunity(db(), { closing_date: '2027-02-10', stage: 'negotiation', primary_contact_id: c });
    await world.tick('2027-02-07T10:00:00Z');
    await world.drain('2027-02-07T10:00:00Z');
    expect(world.smtp.received.map((m) => m.parsed.headers.get('x-nudge-step'))).toEqual(['closing-in-3-days']);
    const rows = await deliveries(db(), id);
    expect(rows.map((r) => [r.step_id, r.status, r.reason]).sort()).toEqual([
      ['closing-in-14-days', 'suppressed', 'expired'],
      ['closing-in-3-days', 'sent', null],
      ['closing-in-7-days', 'suppressed', 'expired'],
    ]);
    // The next scans add nothing.
    await world.tick('2027-02-07T10:01:00Z');
    await world.tick('2027-02-08T10:00:00Z');
    expect(await deliveries(db(), id)).toHaveLength(3);
  });
});

describe('a stale opportunity', () => {
  it('gets no customer email; its owner is asked to update the date the day after', async () => {
    const c = await insertContact(db(), { email: 'stale@customer.test', time_zone: 'UTC' });
    const id = await insertOpportunity(db(), { closing_date: '2027-03-01', stage: 'proposal', primary_contact_id: c, owner_email: 'rep@acme.test' });
    // The owner step is due 2027-03-02 09:00 in defaults.timeZone (Europe/Brussels, CET +1) = 08:00Z.
    expect((await world.tick('2027-03-02T07:59:00Z')).enqueued).toBe(0);
    expect((await world.tick('2027-03-02T08:00:00Z')).enqueued).toBe(1);
    await world.drain('2027-03-02T08:00:00Z');
    expect(world.smtp.received.map((m) => m.envelopeTo[0])).toEqual(['rep@acme.test']);
    const owner = world.smtp.received[0]!;
    expect(owner.raw).not.toMatch(/^List-Unsubscribe/im);
    expect(owner.parsed.subject).toContain('Trip to the USA');
    const rows = await deliveries(db(), id);
    expect(rows.filter((r) => r.step_id === 'update-closing-date').map((r) => [r.status, r.contact_id])).toEqual([['sent', null]]);
    expect(rows.filter((r) => r.recipient === 'stale@customer.test' && r.status === 'sent')).toEqual([]);
  });
});

describe('the proposal follow-up', () => {
  it('falls due two days after the stage was entered, in the contact\'s time zone', async () => {
    const c = await insertContact(db(), { email: 'ny@customer.test', time_zone: 'America/New_York' });
    await insertOpportunity(db(), { closing_date: '2027-06-30', stage: 'proposal', primary_contact_id: c, stage_entered_at: new Date('2027-04-05T20:00:00Z') });
    // Entered 2027-04-05 16:00 EDT; two days later, 2027-04-07 09:00 EDT (-4) = 13:00Z.
    expect((await world.tick('2027-04-07T12:59:00Z')).enqueued).toBe(0);
    expect((await world.tick('2027-04-07T13:00:00Z')).enqueued).toBe(1);
    await world.drain('2027-04-07T13:00:00Z');
    expect(world.smtp.received.map((m) => m.parsed.headers.get('x-nudge-step'))).toEqual(['proposal-follow-up']);
  });
});

describe('bad rows', () => {
  it('are suppressed with a reason while the pass goes on for everyone else', async () => {
    const good = await insertContact(db(), { email: 'good@customer.test', time_zone: 'UTC' });
    const noEmail = await insertContact(db(), { email: null, time_zone: 'UTC' });
    const badEmail = await insertContact(db(), { email: 'not an address', time_zone: 'UTC' });
    const mars = await insertContact(db(), { email: 'mars@customer.test', time_zone: 'Mars/Olympus' });
    const opp = (contact: number | null) => insertOpportunity(db(), { closing_date: '2027-05-20', stage: 'proposal', primary_contact_id: contact });
    const ids = { good: await opp(good), noEmail: await opp(noEmail), badEmail: await opp(badEmail), none: await opp(null), mars: await opp(mars) };
    // 3 days before 2027-05-20 at 09:00 UTC; Mars/Olympus falls back to Europe/Brussels (CEST +2) = 07:00Z.
    const summary = await world.tick('2027-05-17T09:00:00Z');
    // 3 suppressions for the 3-day step, and the 14- and 7-day steps of all five long expired.
    expect(summary).toMatchObject({ scanned: 5, enqueued: 2, suppressed: 3 + 10, errors: 0 });
    await world.drain('2027-05-17T09:00:00Z');
    expect(world.smtp.received.map((m) => m.envelopeTo[0]).sort()).toEqual(['good@customer.test', 'mars@customer.test']);
    const reasons = async (id: number) => (await deliveries(db(), id)).filter((r) => r.step_id === 'closing-in-3-days').map((r) => r.reason ?? r.status);
    expect(await reasons(ids.noEmail)).toEqual(['invalid_email']);
    expect(await reasons(ids.badEmail)).toEqual(['invalid_email']);
    expect(await reasons(ids.none)).toEqual(['no_contact']);
    const marsRow = (await deliveries(db(), ids.mars)).find((r) => r.step_id === 'closing-in-3-days')!;
    expect(marsRow.due_at!.toISOString()).toBe('2027-05-17T07:00:00.000Z');
  });
});

describe('writes behind the pass', () => {
  it('a failing enqueue fails the pass with its own error, after the writes before it are done', async () => {
    for (let i = 0; i < 6; i++) {
      await insertOpportunity(db(), { closing_date: '2027-01-17', stage: 'proposal', primary_contact_id: await insertContact(db(), { time_zone: 'UTC' }) });
    }
    let calls = 0;
    const enqueue = async (batch: unknown[]) => {
      calls += 1;
      if (calls === 2) throw new Error('redis is gone');
      return batch.length;
    };
    const scan = runScan({ db: db(), journey: (await world.rt.content()).journey, logger: silentLogger, enqueue },
      new Date('2027-01-14T09:00:00Z'), { pageSize: 2 });
    await expect(scan).rejects.toThrow('redis is gone');
    // The first page's jobs were handed over, the failure stopped the pass: not all three pages.
    expect(calls).toBeGreaterThanOrEqual(2);
    expect(calls).toBeLessThan(4);
  });

  it('a failing pass leaves nothing it read ahead running: every connection is back when it throws', async () => {
    for (let i = 0; i < 12; i++) {
      await insertOpportunity(db(), { closing_date: '2027-01-17', stage: 'proposal', primary_contact_id: await insertContact(db(), { time_zone: 'UTC' }) });
    }
    const { db: scanDb, pool } = createDb(world.database.url, { max: 4 });
    try {
      const scan = runScan({ db: scanDb, journey: (await world.rt.content()).journey, logger: silentLogger,
        enqueue: async () => { throw new Error('redis is gone'); } }, new Date('2027-01-14T09:00:00Z'), { pageSize: 1 });
      await expect(scan).rejects.toThrow('redis is gone');
      // Pages read and prepared ahead of the failing one have finished: no client is checked out.
      expect(pool.totalCount - pool.idleCount).toBe(0);
    } finally {
      await scanDb.destroy();
    }
  });
});

describe('triage on real rows', () => {
  it('a second pass a day later, over unchanged data, enqueues nothing and writes nothing twice', async () => {
    const sent = await insertContact(db(), { time_zone: 'UTC' });
    const unsubscribed = await insertContact(db(), { time_zone: 'UTC', unsubscribed_at: new Date('2026-01-01T00:00:00Z') });
    const a = await insertOpportunity(db(), { closing_date: '2027-01-17', stage: 'proposal', primary_contact_id: sent });
    await insertOpportunity(db(), { closing_date: '2027-01-17', stage: 'proposal', primary_contact_id: unsubscribed });
    const first = await world.tick('2027-01-14T09:00:00Z');
    expect(first).toMatchObject({ scanned: 2, enqueued: 1 });
    await world.drain('2027-01-14T09:00:00Z');
    const rows = (await deliveries(db())).length;
    // A day later the 3-day step's window has closed for both: one was sent, one suppressed.
    const jobs: DeliverJob[] = [];
    const summary = await runScan({ db: db(), journey: (await world.rt.content()).journey, logger: silentLogger,
      enqueue: async (batch) => { jobs.push(...batch.map((b) => b.data)); return batch.length; } }, new Date('2027-01-15T12:00:00Z'));
    expect(summary).toMatchObject({ scanned: 2, enqueued: 0, suppressed: 0, errors: 0 });
    expect(jobs).toEqual([]);
    expect((await deliveries(db())).length).toBe(rows);
    expect((await deliveries(db(), a)).map((r) => [r.step_id, r.status])).toContainEqual(['closing-in-3-days', 'sent']);
  });
});

describe('a closing date PostgreSQL keeps but a calendar cannot', () => {
  it('does not stop the pass: the follow-up of an opportunity closing on "infinity" is sent, and everyone else is scanned', async () => {
    const now = new Date('2027-03-10T12:00:00Z');
    const odd = await insertOpportunity(db(), { closing_date: 'infinity', stage: 'proposal', primary_contact_id: await insertContact(db(), { time_zone: 'UTC' }) });
    await sql`update opportunities set stage_entered_at = ${new Date('2027-03-08T08:00:00Z')} where id = ${odd}`.execute(db());
    const other = await insertOpportunity(db(), { closing_date: '2027-03-13', stage: 'proposal', primary_contact_id: await insertContact(db(), { time_zone: 'UTC' }) });
    const jobs: DeliverJob[] = [];
    const summary = await runScan({ db: db(), journey: (await world.rt.content()).journey, logger: silentLogger,
      enqueue: async (batch) => { jobs.push(...batch.map((b) => b.data)); return batch.length; } }, now);
    expect(summary.errors).toBe(0);
    expect(jobs.map((j) => [j.opportunityId, j.stepId]).sort()).toEqual([[odd, 'proposal-follow-up'], [other, 'closing-in-3-days']].sort());
  });
});

describe('the enqueuer', () => {
  const job = (n: number) => {
    const data: DeliverJob = { opportunityId: n, stepId: 'closing-in-7-days', closingDate: '2027-01-21', occurrence: '' };
    return { id: `o${n}.closing-in-7-days.2027-01-21.once`, data };
  };

  it('resolves to the jobs it added, not those already in the queue, chunk by chunk and in both lanes', async () => {
    const enqueue = world.rt.enqueuer();
    expect(await enqueue([job(1), job(2)])).toBe(2);
    // One already there, one new, in the same chunk.
    expect(await enqueue([job(1), job(3)])).toBe(1);
    // Three chunks of 1000 (two lanes), some of them already there.
    const many = Array.from({ length: 2500 }, (_, i) => job(i + 1));
    expect(await enqueue(many)).toBe(2497);
    expect(await enqueue(many)).toBe(0);
    expect(await world.rt.queue.getWaitingCount()).toBe(2500);
  });
});
