// Frozen in time: this migration never imports src/ and types the database as `any`.
import { sql, type Kysely } from 'kysely';

// The scan's triage reads, for one page of opportunities in (closing_date, id) order, what was
// decided about them at their current closing dates: one range of this index, read without
// touching the table, instead of a probe per opportunity.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create index deliveries_by_closing_date on deliveries (closing_date, opportunity_id)
      include (step_id, occurrence, contact_id, recipient, status, reason)
  `.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists deliveries_by_closing_date`.execute(db);
}
