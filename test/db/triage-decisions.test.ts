/**
 * The decisions triage reads per page come packed into one text (`src/db/snapshots.ts`): they must
 * be the rows themselves, whatever the addresses hold, nulls included.
 */
import { CompiledQuery, Kysely, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresDialect } from '../../src/db/commit-hook.ts';
import { createPool } from '../../src/db/database.ts';
import type { Database } from '../../src/db/schema.ts';
import { closingDatePage, stageEnteredPage, toDecisionOpportunity } from '../../src/db/opportunities.ts';
import { decisionsAbout, decisionsAtClosingDates, unpackDecisions } from '../../src/db/snapshots.ts';
import type { TriageDecision } from '../../src/journey/triage.ts';
import { createScanReadDb } from '../../src/runtime.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { insertContact, insertOpportunity } from '../helpers/fixtures.ts';

let t: TestDatabase;

beforeAll(async () => {
  t = await createTestDatabase();
});

afterAll(async () => {
  await t?.drop();
});

interface Written {
  opportunity: number;
  step: string;
  contact: number | null;
  recipient: string;
  status: 'sent' | 'suppressed' | 'failed';
  reason: string | null;
  closingDate: string | null;
  occurrence?: string;
}

async function write(rows: Written[]): Promise<void> {
  await t.db.insertInto('deliveries').values(rows.map((r) => ({
    opportunity_id: r.opportunity, step_id: r.step, contact_id: r.contact, recipient: r.recipient, status: r.status,
    reason: r.reason, closing_date: r.closingDate, occurrence: r.occurrence ?? '', decided_at: new Date('2027-01-01T09:00:00Z'),
  }))).execute();
}

function expected(rows: Written[]): Map<number, TriageDecision[]> {
  const out = new Map<number, TriageDecision[]>();
  for (const r of rows) {
    const d: TriageDecision = {
      stepId: r.step, occurrence: r.occurrence ?? '', recipient: r.recipient, contactId: r.contact,
      status: r.status, reason: r.reason as TriageDecision['reason'], closingDate: r.closingDate,
    };
    out.set(r.opportunity, [...(out.get(r.opportunity) ?? []), d]);
  }
  return out;
}

/** Order within an opportunity is not promised. */
function sorted(m: Map<number, TriageDecision[]>): [number, TriageDecision[]][] {
  const key = (d: TriageDecision) => JSON.stringify(d);
  return [...m].map(([id, list]): [number, TriageDecision[]] => [id, [...list].sort((a, b) => key(a).localeCompare(key(b)))])
    .sort((a, b) => a[0] - b[0]);
}

describe('the decisions triage reads', () => {
  it('are the rows, nulls and empty addresses included, for a closing-date range and for a list of ids', async () => {
    const contact = await insertContact(t.db);
    const a = await insertOpportunity(t.db, { closing_date: '2027-02-01', primary_contact_id: contact });
    const b = await insertOpportunity(t.db, { closing_date: '2027-02-02', owner_email: 'Owner@Acme.test' });
    const rows: Written[] = [
      { opportunity: a, step: 'closing-in-7-days', contact, recipient: 'ada@customer.test', status: 'sent', reason: null, closingDate: '2027-02-01' },
      { opportunity: a, step: 'closing-in-3-days', contact: null, recipient: '', status: 'suppressed', reason: 'no_contact', closingDate: '2027-02-01' },
      { opportunity: a, step: 'proposal-follow-up', contact, recipient: 'ada@customer.test', status: 'failed', reason: 'smtp_rejected', closingDate: '2027-02-01', occurrence: '2027-02-01' },
      // An address as the CRM may hold it, with the field separator in it, read back whole.
      { opportunity: b, step: 'update-closing-date', contact: null, recipient: 'odd\u001fone@acme.test', status: 'suppressed', reason: 'invalid_email', closingDate: '2027-02-02' },
    ];
    await write(rows);
    const range = await decisionsAtClosingDates(t.db, { closingDate: '2027-02-01', id: a }, { closingDate: '2027-02-02', id: b });
    expect(sorted(range)).toEqual(sorted(expected(rows)));
    expect(sorted(await decisionsAbout(t.db, [a, b]))).toEqual(sorted(expected(rows)));
    expect(sorted(await decisionsAbout(t.db, [b]))).toEqual(sorted(expected(rows.slice(3))));
    // The range stops at its bounds: (2027-02-01, a) to (2027-02-01, a) holds a's only.
    expect(sorted(await decisionsAtClosingDates(t.db, { closingDate: '2027-02-01', id: a }, { closingDate: '2027-02-01', id: a })))
      .toEqual(sorted(expected(rows.slice(0, 3))));
  });

  it('are read as rows when an address holds the record separator, which would split one decision in two', async () => {
    const c = await insertOpportunity(t.db, { closing_date: '2027-03-01', owner_email: 'x@acme.test' });
    const rows: Written[] = [
      { opportunity: c, step: 'update-closing-date', contact: null, recipient: 'two\u001eparts@acme.test', status: 'suppressed', reason: 'invalid_email', closingDate: '2027-03-01' },
      { opportunity: c, step: 'closing-in-3-days', contact: null, recipient: '', status: 'suppressed', reason: 'no_contact', closingDate: '2027-03-01' },
    ];
    await write(rows);
    expect(sorted(await decisionsAtClosingDates(t.db, { closingDate: '2027-03-01', id: c }, { closingDate: '2027-03-01', id: c })))
      .toEqual(sorted(expected(rows)));
    expect(sorted(await decisionsAbout(t.db, [c]))).toEqual(sorted(expected(rows)));
  });

  it('are read as rows when another text column holds a separator, which would shift the fields after it', async () => {
    const odd: Written[] = [
      { opportunity: 0, step: 'odd\u001fstep', contact: null, recipient: 'y@acme.test', status: 'sent', reason: null, closingDate: '2027-04-01' },
      { opportunity: 0, step: 'closing-in-3-days', contact: null, recipient: '', status: 'suppressed', reason: 'no_contact', closingDate: '2027-04-02', occurrence: 'x\u001fy' },
      { opportunity: 0, step: 'closing-in-7-days', contact: null, recipient: '', status: 'suppressed', reason: 'no\u001fcontact', closingDate: '2027-04-03' },
    ];
    for (const row of odd) {
      // Each alone on its page: a separator in one decision must not be hidden by another's.
      row.opportunity = await insertOpportunity(t.db, { closing_date: row.closingDate, owner_email: 'y@acme.test' });
      await write([row]);
      const at = { closingDate: row.closingDate!, id: row.opportunity };
      expect(sorted(await decisionsAtClosingDates(t.db, at, at))).toEqual(sorted(expected([row])));
      expect(sorted(await decisionsAbout(t.db, [row.opportunity]))).toEqual(sorted(expected([row])));
    }
  });

  it('none, for a range or ids with no decision', async () => {
    expect(await decisionsAtClosingDates(t.db, { closingDate: '2030-01-01', id: 0 }, { closingDate: '2030-01-02', id: 0 })).toEqual(new Map());
    expect(await decisionsAbout(t.db, [987_654_321])).toEqual(new Map());
  });

  it("of a page are read from the page's own part of the index, not from the rest of its last closing day", async () => {
    // A busy closing day: 20,000 decisions, then 2,000 on the day after.
    await sql`insert into deliveries (opportunity_id, step_id, recipient, status, reason, closing_date, decided_at)
      select i, 'closing-in-3-days', '', 'suppressed', 'no_contact', d::date, '2027-01-01T09:00:00Z'
      from (select i, '2028-06-01' as d from generate_series(1, 20000) i
            union all select i, '2028-06-02' from generate_series(1, 2000) i) s`.execute(t.db);
    await sql`vacuum analyze deliveries`.execute(t.db);
    const queries: CompiledQuery[] = [];
    const logging = new Kysely<Database>({ dialect: postgresDialect({ pool: createPool(t.url, { max: 1 }) }), log: (e) => { queries.push(e.query); } });
    /** Index pages and heap pages the statement read: how far its scans went. */
    const blocksRead = async (first: { closingDate: string; id: number }, last: { closingDate: string; id: number }) => {
      queries.length = 0;
      const decisions = await decisionsAtClosingDates(logging, first, last);
      const q = queries[0]!;
      const { rows } = await logging.executeQuery<{ 'QUERY PLAN': { Plan: Record<string, number> }[] }>(
        CompiledQuery.raw(`explain (analyze, buffers, format json) ${q.sql}`, [...q.parameters]));
      const plan = rows[0]!['QUERY PLAN'][0]!.Plan;
      return { decisions: [...decisions.values()].flat().length, blocks: plan['Shared Hit Blocks']! + plan['Shared Read Blocks']! };
    };
    try {
      // 51 decisions, in a few of the index's pages: the rest of the day would take hundreds more.
      const within = await blocksRead({ closingDate: '2028-06-01', id: 100 }, { closingDate: '2028-06-01', id: 150 });
      expect(within.decisions).toBe(51);
      expect(within.blocks).toBeLessThan(20);
      // Across two days: the end of the first, the start of the second.
      const across = await blocksRead({ closingDate: '2028-06-01', id: 19_951 }, { closingDate: '2028-06-02', id: 50 });
      expect(across.decisions).toBe(100);
      expect(across.blocks).toBeLessThan(20);
    } finally {
      await logging.destroy();
      await sql`delete from deliveries where closing_date in ('2028-06-01', '2028-06-02')`.execute(t.db);
    }
  });
});

describe('unpacking', () => {
  it('refuses a text whose records do not match the count, and one with a record short of fields or past eight', () => {
    const one = ['7', 'step', '', '', 'suppressed', 'no_contact', '2027-01-01', 'a@b.test'].join('\u001f');
    expect(unpackDecisions(one, 1)?.get(7)).toHaveLength(1);
    expect(unpackDecisions(one, 2)).toBeNull();
    expect(unpackDecisions(`${one}\u001e${one}`, 1)).toBeNull();
    expect(unpackDecisions('7\u001fstep', 1)).toBeNull();
    // A ninth field: a value held a field separator.
    expect(unpackDecisions(`${one}\u001fmore`, 1)).toBeNull();
    expect(unpackDecisions(null, 0)).toEqual(new Map());
    expect(unpackDecisions(null, 1)).toBeNull();
  });
});

describe("the scan's read pool", () => {
  it('leaves timestamps as text, which toDecisionOpportunity reads as the instants the primary parses, offsets and microseconds included', async () => {
    const id = await insertOpportunity(t.db, { closing_date: '2031-03-10' });
    await sql`update opportunities set stage_entered_at = '2031-03-01 23:59:59.999999+05:30' where id = ${id}`.execute(t.db);
    const other = await insertOpportunity(t.db, { closing_date: '2031-03-11' });
    await sql`update opportunities set stage_entered_at = '1999-12-31 12:00:00.5-08' where id = ${other}`.execute(t.db);
    const readDb = createScanReadDb(t.url);
    try {
      const range = { from: '2031-03-10', to: '2031-03-10' };
      const [fromScan] = await closingDatePage(readDb, range, null, 10);
      const [fromPrimary] = await closingDatePage(t.db, range, null, 10);
      expect(typeof fromScan!.stage_entered_at).toBe('string');
      expect(fromPrimary!.stage_entered_at).toBeInstanceOf(Date);
      const scanned = toDecisionOpportunity(fromScan!);
      expect(scanned).toEqual(toDecisionOpportunity(fromPrimary!));
      // 23:59:59.999999 at UTC+05:30 is 18:29:59.999999Z; a Date keeps the milliseconds.
      expect(scanned.stageEnteredAt.toISOString()).toBe('2031-03-01T18:29:59.999Z');
      // One digit of fraction and a negative offset.
      const [late] = await closingDatePage(readDb, { from: '2031-03-11', to: '2031-03-11' }, null, 10);
      expect(toDecisionOpportunity(late!).stageEnteredAt.toISOString()).toBe('1999-12-31T20:00:00.500Z');
      // A page holds what deciding reads, not what only rendering does, in both passes.
      const [entered] = await stageEnteredPage(readDb, fromScan!.stage, { from: new Date('1999-12-31T19:00:00Z'), to: new Date('1999-12-31T21:00:00Z') }, null, 10);
      expect(entered!.id).toBe(other);
      for (const row of [fromScan, entered]) {
        for (const column of ['title', 'currency', 'created_at', 'updated_at']) expect(row).not.toHaveProperty(column);
      }
    } finally {
      await readDb.destroy();
    }
  });
});
