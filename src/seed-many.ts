/**
 * `seed --demo --opportunities N`: N generated opportunities, each with a contact of its own, for
 * trying Nudge at scale (a scan of a big table, simulate, the forecast). Written by PostgreSQL in
 * batches (`generate_series`), each batch a statement, so that a million rows take a minute, not
 * an hour; a second run adds N more. Everything is derived from the contact's id, not drawn at
 * random: the same N on the same day into the same database writes the same pipeline.
 */
import { sql } from 'kysely';
import type { Db } from './db/database.ts';
import { addDays, localDate } from './journey/time.ts';

/** Opportunities (and contacts) per statement. */
export const SEED_BATCH = 10_000;

/** Stages entered over the 60 days before `now`, to the minute: not all at the same instant. */
const STAGE_SPREAD_MINUTES = 60 * 24 * 60;

export interface ManySeeded {
  contacts: number;
  opportunities: number;
}

/**
 * Closing dates from 30 days ago (stale ones) to 90 days ahead of `now`'s day in UTC; amounts of
 * 200 to 50,200 in four currencies, one in seven blank; stages across the pipeline's own (its open
 * ones mostly, one in ten won or lost), entered over the 60 days before `now`; contacts in several locales and time zones, one in six
 * without a zone. Addresses are `customer-<id>@example.com` (a domain that receives no mail), by
 * the contact's own id.
 */
export async function seedMany(db: Db, now: Date, count: number, onProgress?: (written: number) => void): Promise<ManySeeded> {
  const stages = await db.selectFrom('stages').select(['key', 'outcome']).orderBy('position').orderBy('key').execute();
  const open = stages.filter((s) => s.outcome === 'open').map((s) => s.key);
  const closed = stages.filter((s) => s.outcome !== 'open').map((s) => s.key);
  if (open.length === 0) throw new Error('the stages table has no open stage: generated opportunities need one');
  const today = localDate(now, 'UTC');
  let written = 0;
  while (written < count) {
    const batch = Math.min(SEED_BATCH, count - written);
    // Each contact is numbered by its own id, drawn from its identity sequence: addresses never
    // repeat, whatever ran before or runs beside, and each opportunity is derived from its contact.
    await sql`
      with numbers as (select nextval(pg_get_serial_sequence('contacts', 'id')) as g from generate_series(1, ${batch}::int)),
      people as (
        insert into contacts (id, email, first_name, last_name, locale, time_zone)
        select g, 'customer-' || g || '@example.com',
               (array['Alice','Bernd','Carla','Daichi','Emma','Farid','Gita','Hugo'])[1 + g % 8],
               (array['Martin','Schulz','Diaz','Sato','Dubois','Haddad','Rao','Jansen'])[1 + (g / 8) % 8],
               (array['en','de','fr','en-US','nl'])[1 + g % 5],
               (array['Europe/Brussels','Europe/Berlin','America/New_York','Asia/Tokyo','Australia/Sydney',null])[1 + (g / 5) % 6]
        from numbers
        returning id as g
      )
      insert into opportunities (title, amount, currency, closing_date, stage, primary_contact_id, owner_email, stage_entered_at)
      select (array['Trip to','Linguistic courses in','Team offsite in','Ski week in','Conference booth in','Sailing course in'])[1 + g % 6]
               || ' ' || (array['the USA','Australia','Lisbon','the Alps','Osaka','Croatia','Iceland','Kenya'])[1 + (g / 6) % 8],
             case when g % 7 = 0 then null else (200 + (g * 7919) % 50000)::numeric(14,2) end,
             (array['EUR','EUR','USD','GBP','JPY'])[1 + (g / 3) % 5],
             ${addDays(today, -30)}::date + ((g * 37) % 121)::int,
             case when g % 10 = 0 and cardinality(${closed}::text[]) > 0
                  then (${closed}::text[])[1 + (g / 10) % cardinality(${closed}::text[])]
                  else (${open}::text[])[1 + g % cardinality(${open}::text[])] end,
             g, 'sales@example.com',
             ${now}::timestamptz - ((g * 7919) % ${STAGE_SPREAD_MINUTES}::bigint) * interval '1 minute'
      from people
    `.execute(db);
    written += batch;
    onProgress?.(written);
  }
  return { contacts: count, opportunities: count };
}
