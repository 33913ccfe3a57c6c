/** The SQL contract of SPEC section 2, as the CRM meets it. */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateToLatest } from '../../src/db/migrate.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { insertOpportunity } from '../helpers/fixtures.ts';

let t: TestDatabase;

beforeAll(async () => {
  t = await createTestDatabase();
});

afterAll(async () => {
  await t?.drop();
});

describe('migrations', () => {
  it('ship the default pipeline', async () => {
    const stages = await t.db.selectFrom('stages').select(['key', 'probability', 'outcome']).orderBy('position').execute();
    expect(stages).toEqual([
      { key: 'qualification', probability: 10, outcome: 'open' },
      { key: 'needs_analysis', probability: 25, outcome: 'open' },
      { key: 'proposal', probability: 50, outcome: 'open' },
      { key: 'negotiation', probability: 75, outcome: 'open' },
      { key: 'won', probability: 100, outcome: 'won' },
      { key: 'lost', probability: 0, outcome: 'lost' },
    ]);
  });

  it('are safe to run again', async () => {
    const result = await migrateToLatest(t.db);
    expect(result.results).toEqual([]);
  });

  it('refuse a stage that is not in stages', async () => {
    await expect(insertOpportunity(t.db, { stage: 'maybe' })).rejects.toThrow(/foreign key/);
  });
});

describe('the opportunities trigger', () => {
  it('moves stage_entered_at when the stage changes, and updated_at on any change, whoever writes', async () => {
    const id = await insertOpportunity(t.db, { stage: 'qualification', stage_entered_at: new Date('2026-01-01T00:00:00Z') });
    await sql`update opportunities set title = 'Renamed', updated_at = '2020-01-01' where id = ${id}`.execute(t.db);
    let row = await t.db.selectFrom('opportunities').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
    expect(row.stage_entered_at.toISOString()).toBe('2026-01-01T00:00:00.000Z');
    expect(Date.now() - row.updated_at.getTime()).toBeLessThan(60_000);

    await sql`update opportunities set stage = 'proposal' where id = ${id}`.execute(t.db);
    row = await t.db.selectFrom('opportunities').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
    expect(Date.now() - row.stage_entered_at.getTime()).toBeLessThan(60_000);
  });

  it('lets a statement that sets stage_entered_at itself win (a CRM importing history)', async () => {
    const id = await insertOpportunity(t.db, { stage: 'qualification' });
    await sql`update opportunities set stage = 'negotiation', stage_entered_at = '2025-06-01T12:00:00Z' where id = ${id}`.execute(t.db);
    const row = await t.db.selectFrom('opportunities').select('stage_entered_at').where('id', '=', id).executeTakeFirstOrThrow();
    expect(row.stage_entered_at.toISOString()).toBe('2025-06-01T12:00:00.000Z');
  });
});

describe('dates and numbers', () => {
  it('read a SQL date as the calendar day and an amount as an exact decimal', async () => {
    const id = await insertOpportunity(t.db, { closing_date: '2028-02-29', amount: '1234567890.05' });
    const row = await t.db.selectFrom('opportunities').select(['closing_date', 'amount', 'id']).where('id', '=', id).executeTakeFirstOrThrow();
    expect(row).toEqual({ closing_date: '2028-02-29', amount: '1234567890.05', id });
  });
});

describe('the deliveries indexes', () => {
  const base = { opportunity_id: 1, step_id: 's', recipient: 'a@b.test', decided_at: new Date(), occurrence: '' };

  it('make a second spending row impossible, and let suppressions repeat only with another reason or date', async () => {
    await t.db.insertInto('deliveries').values({ ...base, status: 'suppressed', reason: 'unsubscribed', closing_date: '2026-12-10' }).execute();
    await expect(t.db.insertInto('deliveries').values({ ...base, status: 'suppressed', reason: 'unsubscribed', closing_date: '2026-12-10' }).execute())
      .rejects.toThrow(/deliveries_once_per_reason/);
    await t.db.insertInto('deliveries').values({ ...base, status: 'suppressed', reason: 'bounced', closing_date: '2026-12-10' }).execute();
    await t.db.insertInto('deliveries').values({ ...base, status: 'suppressed', reason: 'unsubscribed', closing_date: '2026-12-11' }).execute();
    await t.db.insertInto('deliveries').values({ ...base, status: 'sent' }).execute();
    await expect(t.db.insertInto('deliveries').values({ ...base, status: 'unknown' }).execute()).rejects.toThrow(/deliveries_spent/);
    await expect(t.db.insertInto('deliveries').values({ ...base, status: 'failed', reason: 'smtp_rejected' }).execute()).rejects.toThrow(/deliveries_spent/);
    // Another occurrence (repeat: onNewClosingDate) may be sent.
    await t.db.insertInto('deliveries').values({ ...base, status: 'sent', occurrence: '2027-01-01' }).execute();
  });

  it('refuse a suppression without a reason and a send with one', async () => {
    await expect(t.db.insertInto('deliveries').values({ ...base, step_id: 'x', status: 'suppressed', reason: null }).execute()).rejects.toThrow(/check/);
    await expect(t.db.insertInto('deliveries').values({ ...base, step_id: 'y', status: 'sent', reason: 'expired' }).execute()).rejects.toThrow(/check/);
  });
});
