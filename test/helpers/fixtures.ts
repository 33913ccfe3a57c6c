/** Rows written the way the CRM writes them: through the SQL contract of SPEC section 2. */
import { sql } from 'kysely';
import type { Db } from '../../src/db/database.ts';

export interface ContactInput {
  email?: string | null;
  first_name?: string | null;
  last_name?: string | null;
  locale?: string;
  time_zone?: string | null;
  unsubscribed_at?: Date | null;
  bounced_at?: Date | null;
}

export async function insertContact(db: Db, input: ContactInput = {}): Promise<number> {
  const row = await db.insertInto('contacts').values({
    email: 'email' in input ? input.email! : `person-${Math.random().toString(36).slice(2, 10)}@example.com`,
    first_name: input.first_name ?? 'Pat', last_name: input.last_name ?? 'Doe', locale: input.locale ?? 'en',
    time_zone: input.time_zone ?? null, unsubscribed_at: input.unsubscribed_at ?? null, bounced_at: input.bounced_at ?? null,
  }).returning('id').executeTakeFirstOrThrow();
  return row.id;
}

export interface OpportunityInput {
  title?: string;
  amount?: string | null;
  currency?: string;
  closing_date?: string | null;
  stage?: string;
  primary_contact_id?: number | null;
  owner_email?: string | null;
  stage_entered_at?: Date;
}

export async function insertOpportunity(db: Db, input: OpportunityInput = {}): Promise<number> {
  const row = await db.insertInto('opportunities').values({
    title: input.title ?? 'Trip to the USA', amount: input.amount === undefined ? '12000.00' : input.amount,
    currency: input.currency ?? 'EUR', closing_date: input.closing_date ?? null, stage: input.stage ?? 'qualification',
    primary_contact_id: input.primary_contact_id ?? null, owner_email: input.owner_email ?? null,
    ...(input.stage_entered_at ? { stage_entered_at: input.stage_entered_at } : {}),
  }).returning('id').executeTakeFirstOrThrow();
  return row.id;
}

export async function deliveries(db: Db, opportunityId?: number) {
  let q = db.selectFrom('deliveries').selectAll().orderBy('id');
  if (opportunityId !== undefined) q = q.where('opportunity_id', '=', opportunityId);
  return q.execute();
}

/**
 * Sessions of `db`'s database now waiting for a lock (a row's, an advisory one), whose statement
 * is `like` the pattern: how a test knows a statement waits, rather than sleeping and assuming so.
 */
export async function waitingOnLock(db: Db, like = '%'): Promise<number> {
  const r = await sql<{ n: number }>`select count(*)::int as n from pg_stat_activity
    where datname = current_database() and wait_event_type = 'Lock' and query like ${like}`.execute(db);
  return r.rows[0]!.n;
}

/**
 * A CRM transaction on `db` that has made `change` and holds it, uncommitted (its row locks held),
 * until `commit()`, which waits for the commit.
 */
export async function heldCrmChange(db: Db, change: (trx: Db) => Promise<void>): Promise<{ commit(): Promise<void> }> {
  let release!: () => void;
  const held = new Promise<void>((r) => { release = r; });
  let changed!: () => void;
  const made = new Promise<void>((r) => { changed = r; });
  const done = db.transaction().execute(async (trx) => {
    await change(trx);
    changed();
    await held;
  });
  // A change that fails ends the transaction: reported here, not left waiting.
  await Promise.race([made, done]);
  return {
    async commit() {
      release();
      await done;
    },
  };
}
