// Frozen in time: this migration never imports src/ and types the database as `any`.
import { sql, type Kysely } from 'kysely';

// A claim (status `unknown`) records when it was made and when the message started to be handed
// to SMTP. A claim never handed over whose worker died can be released safely; one handed over
// cannot (the server may have it).
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table deliveries add column claimed_at timestamptz null, add column handed_at timestamptz null`.execute(db);
  await sql`create index deliveries_unhanded_claims on deliveries (claimed_at) where status = 'unknown' and handed_at is null`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists deliveries_unhanded_claims`.execute(db);
  await sql`alter table deliveries drop column if exists claimed_at, drop column if exists handed_at`.execute(db);
}
