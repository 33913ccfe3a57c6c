// Frozen in time: this migration never imports src/ and types the database as `any`.
import { sql, type Kysely } from 'kysely';

// Every scan page and every delivery job reads one opportunity's decision history; both indexes
// that start with opportunity_id are partial, so without this one that read scans the table.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create index deliveries_by_opportunity on deliveries (opportunity_id, id)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists deliveries_by_opportunity`.execute(db);
}
