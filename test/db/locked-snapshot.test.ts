/**
 * The worker's locked load reads what the unlocked one reads (the same `evaluate` decision), and
 * holds the locks the send path relies on until its transaction ends.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb, type Db } from '../../src/db/database.ts';
import { lockAndLoadSnapshot, StaleRolesError } from '../../src/db/locked-snapshot.ts';
import { loadSnapshot } from '../../src/db/snapshots.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { until } from '../helpers/daemon.ts';
import { heldCrmChange, insertContact, insertOpportunity, waitingOnLock } from '../helpers/fixtures.ts';

let t: TestDatabase;
let other: Db;

beforeAll(async () => {
  t = await createTestDatabase();
  other = createDb(t.url, { max: 2 }).db;
});

afterAll(async () => {
  await other?.destroy();
  await t?.drop();
});

const NEEDS = { activities: true, sentSince: new Date('2026-12-01T00:00:00Z') };

async function richOpportunity(): Promise<{ id: number; primary: number; buyer: number }> {
  const db = t.db;
  const primary = await insertContact(db, { email: 'ada@customer.test', first_name: 'Ada', time_zone: 'Europe/Brussels', locale: 'fr' });
  const buyer = await insertContact(db, { email: null, first_name: null, last_name: null });
  // Microseconds, which a JavaScript Date cannot hold, and a millisecond that a float could round.
  await sql`update contacts set unsubscribed_at = '2026-11-30 10:00:00.291999+00', bounced_at = '1969-07-20 20:17:40.5+00' where id = ${buyer}`.execute(db);
  const id = await insertOpportunity(db, { closing_date: '2026-12-10', primary_contact_id: primary, owner_email: 'owner@acme.test', amount: null });
  const elsewhere = await insertOpportunity(db, { closing_date: '2026-12-20', primary_contact_id: primary });
  await db.insertInto('opportunity_contacts').values([
    { opportunity_id: id, contact_id: buyer, role: 'decision-maker' },
    { opportunity_id: id, contact_id: primary, role: 'champion' },
  ]).execute();
  const decision = (opportunity: number, step: string, contact: number | null, status: 'sent' | 'suppressed' | 'unknown', decidedAt: string) => ({
    opportunity_id: opportunity, step_id: step, contact_id: contact, recipient: contact === null ? '' : `c${contact}@x.test`, status,
    reason: status === 'suppressed' ? 'frequency_cap' : null, decided_at: sql<Date>`${decidedAt}::timestamptz`, closing_date: status === 'unknown' ? null : '2026-12-10',
  });
  await db.insertInto('deliveries').values([
    decision(id, 'closing-in-14-days', primary, 'sent', '2026-11-26 09:00:00.123456+00'),
    decision(id, 'closing-in-7-days', buyer, 'suppressed', '2026-12-03 09:00:00.000999+00'),
    decision(id, 'owner-nudge', null, 'unknown', '2026-12-04 08:00:00+00'),
    decision(elsewhere, 'closing-in-14-days', primary, 'sent', '2026-12-06 09:00:00.5+00'),
    decision(elsewhere, 'closing-in-7-days', primary, 'unknown', '2026-12-02 09:00:00.001+00'),
    decision(elsewhere, 'closing-in-3-days', primary, 'suppressed', '2026-12-05 09:00:00+00'),
  ] as never).execute();
  await db.insertInto('activities').values([
    { opportunity_id: id, kind: 'call', due_at: sql<Date>`'2026-12-05 10:00:00.777777+00'::timestamptz`, done_at: null },
    { opportunity_id: id, kind: 'task', due_at: null, done_at: sql<Date>`'2026-12-04 10:00:00+00'::timestamptz` },
    { opportunity_id: id, kind: 'note', due_at: null, done_at: null },
    { opportunity_id: elsewhere, kind: 'call', due_at: null, done_at: null },
  ] as never).execute();
  return { id, primary, buyer };
}

/**
 * The locked read of `id`, started while a CRM transaction (`change`) holds the opportunity's row,
 * which commits once the read waits on its lock.
 */
async function readDuringCrmChange(id: number, change: (trx: Db) => Promise<void>) {
  const crm = await heldCrmChange(other, change);
  const reading = t.db.transaction().execute((trx) => lockAndLoadSnapshot(trx, id, NEEDS));
  reading.catch(() => {});
  // The worker waits on the row lock while the CRM's change is uncommitted: seen waiting, then the CRM commits.
  await until('the locked read to wait on the CRM\'s row lock', async () => (await waitingOnLock(t.db)) === 1, 10_000);
  await crm.commit();
  return reading;
}

describe('lockAndLoadSnapshot', () => {
  it('reads the same snapshot as the unlocked load: contacts, roles, history, sends, activities', async () => {
    const { id } = await richOpportunity();
    for (const needs of [NEEDS, { activities: false, sentSince: null }, { activities: true, sentSince: null }, { activities: false, sentSince: NEEDS.sentSince }]) {
      const expected = await loadSnapshot(t.db, id, needs);
      // The worker has always read roles in contact id order; the scan's batch reader in any order.
      const roles = [...expected!.roles].sort((a, b) => a.contactId - b.contactId);
      const locked = await t.db.transaction().execute((trx) => lockAndLoadSnapshot(trx, id, needs));
      expect(locked).toEqual({ ...expected, roles });
    }
    const locked = await t.db.transaction().execute((trx) => lockAndLoadSnapshot(trx, id, NEEDS));
    expect(locked!.history).toHaveLength(3);
    expect([...locked!.sentToContact.values()].map((d) => d.length).sort()).toEqual([0, 2]);
    expect(locked!.activities).toHaveLength(2);
  });

  it('reads an opportunity with no contact, and none that does not exist', async () => {
    const id = await insertOpportunity(t.db, { closing_date: '2026-12-10', owner_email: 'owner@acme.test' });
    const locked = await t.db.transaction().execute((trx) => lockAndLoadSnapshot(trx, id, NEEDS));
    expect(locked).toEqual(await loadSnapshot(t.db, id, NEEDS));
    expect(locked!.contacts.size).toBe(0);
    expect(await t.db.transaction().execute((trx) => lockAndLoadSnapshot(trx, 987654321, NEEDS))).toBeNull();
  });

  it('holds the opportunity and its contacts share-locked (not its roles), and each contact advisory-locked, until the transaction ends', async () => {
    const { id, primary, buyer } = await richOpportunity();
    const blocked = async (statement: (db: Db) => Promise<unknown>) => {
      try {
        await other.transaction().execute(async (trx) => {
          await sql`set local lock_timeout = '200ms'`.execute(trx);
          await statement(trx);
        });
        return false;
      } catch (error) {
        if ((error as { code?: string }).code === '55P03') return true;
        throw error;
      }
    };
    const advisory = (contact: number) => async (db: Db) => {
      const { rows: [r] } = await sql<{ got: boolean }>`select pg_try_advisory_xact_lock(hashtextextended(${`nudge.contact.${contact}`}, 0)) as got`.execute(db);
      if (!r!.got) throw Object.assign(new Error('advisory lock held'), { code: '55P03' });
    };
    await t.db.transaction().execute(async (trx) => {
      await lockAndLoadSnapshot(trx, id, NEEDS);
      expect(await blocked((db) => db.updateTable('opportunities').set({ title: 'changed' }).where('id', '=', id).execute())).toBe(true);
      // Not its roles: a CRM editing them does not wait for a send (which goes by the roles it read).
      expect(await blocked((db) => db.deleteFrom('opportunity_contacts').where('opportunity_id', '=', id).execute())).toBe(false);
      for (const contact of [primary, buyer]) {
        expect(await blocked((db) => db.updateTable('contacts').set({ unsubscribed_at: new Date() }).where('id', '=', contact).execute())).toBe(true);
        expect(await blocked(advisory(contact))).toBe(true);
      }
    });
    expect(await blocked(advisory(primary))).toBe(false);
    expect(await blocked((db) => db.updateTable('contacts').set({ first_name: 'Ada' }).where('id', '=', primary).execute())).toBe(false);
  });

  it('waits for a CRM transaction changing the stage, then reads the opportunity as it now is (not as deleted)', async () => {
    const { id } = await richOpportunity();
    const snapshot = await readDuringCrmChange(id, async (trx) => {
      await trx.updateTable('opportunities').set({ stage: 'negotiation' }).where('id', '=', id).execute();
    });
    expect(snapshot?.opportunity.stage).toMatchObject({ key: 'negotiation', probability: 75 });
  });

  it('refuses a read made while a CRM change of the opportunity and its roles committed, and the next read is whole', async () => {
    // LOCK reads the roles as its statement begins and the opportunity once its lock is granted:
    // a CRM transaction that renames the opportunity and removes a role, committing while LOCK
    // waits, would leave it with the new title and the removed role. HISTORY reads them after.
    const { id } = await richOpportunity();
    await expect(readDuringCrmChange(id, async (trx) => {
      await trx.updateTable('opportunities').set({ title: 'renamed' }).where('id', '=', id).execute();
      await trx.deleteFrom('opportunity_contacts').where('opportunity_id', '=', id).where('role', '=', 'decision-maker').execute();
    })).rejects.toBeInstanceOf(StaleRolesError);
    const again = await t.db.transaction().execute((trx) => lockAndLoadSnapshot(trx, id, NEEDS));
    expect(again!.opportunity.title).toBe('renamed');
    expect(again!.roles.map((r) => r.role)).toEqual(['champion']);
  });
});
