/**
 * `seed --demo`: a small pipeline dated from `now`, so that the first scan sends real emails and
 * `explain` has something to explain. Several time zones and locales, and a few opportunities
 * that must be suppressed (won, unsubscribed, no contact). Runs once: a second run finds the
 * demo contacts and changes nothing.
 */
import type { Db } from './db/database.ts';
import { addDays, isValidTimeZone, localDate, localMinuteOfDay } from './journey/time.ts';

interface DemoContact {
  key: string;
  email: string | null;
  first: string;
  last: string;
  locale: string;
  zone: string | null;
  unsubscribed?: boolean;
}

const CONTACTS: DemoContact[] = [
  { key: 'alice', email: 'alice.martin@example.com', first: 'Alice', last: 'Martin', locale: 'en', zone: 'Europe/Brussels' },
  { key: 'bernd', email: 'bernd.schulz@example.com', first: 'Bernd', last: 'Schulz', locale: 'de', zone: 'Europe/Berlin' },
  { key: 'carla', email: 'carla.diaz@example.com', first: 'Carla', last: 'Diaz', locale: 'en-US', zone: 'America/New_York' },
  { key: 'daichi', email: 'daichi.sato@example.com', first: 'Daichi', last: 'Sato', locale: 'en', zone: 'Asia/Tokyo' },
  { key: 'eve', email: 'eve.unsubscribed@example.com', first: 'Eve', last: 'Dupont', locale: 'en', zone: 'Europe/Paris', unsubscribed: true },
  { key: 'frank', email: null, first: 'Frank', last: 'Nomail', locale: 'en', zone: null },
  { key: 'gita', email: 'gita.rao@example.com', first: 'Gita', last: 'Rao', locale: 'de', zone: 'Mars/Olympus' },
];

interface DemoOpportunity {
  title: string;
  amount: string | null;
  currency: string;
  stage: string;
  contact: string | null;
  /** Days from the day the step falls due to the closing date; null: no closing date. */
  closingIn: number | null;
  enteredDaysAgo?: number;
}

const OPPORTUNITIES: DemoOpportunity[] = [
  { title: 'Trip to the USA', amount: '12000.00', currency: 'EUR', stage: 'qualification', contact: 'alice', closingIn: 14 },
  { title: 'Linguistic courses in Australia', amount: '4800.00', currency: 'EUR', stage: 'needs_analysis', contact: 'bernd', closingIn: 7 },
  { title: 'Team offsite in Lisbon', amount: null, currency: 'USD', stage: 'negotiation', contact: 'carla', closingIn: 3 },
  { title: 'Conference booth in Osaka', amount: '250000.00', currency: 'JPY', stage: 'proposal', contact: 'daichi', closingIn: 20, enteredDaysAgo: 2 },
  { title: 'Ski week in the Alps', amount: '3100.00', currency: 'EUR', stage: 'won', contact: 'alice', closingIn: 14 },
  { title: 'Wine tasting tour <Bordeaux> & "friends"', amount: '900.00', currency: 'EUR', stage: 'proposal', contact: 'eve', closingIn: 7 },
  { title: 'Sailing course in Croatia', amount: '2200.00', currency: 'EUR', stage: 'qualification', contact: null, closingIn: 14 },
  { title: 'Cooking class in Naples', amount: '650.00', currency: 'EUR', stage: 'qualification', contact: 'frank', closingIn: 14 },
  { title: 'Language exchange in Hamburg', amount: '1500.00', currency: 'EUR', stage: 'qualification', contact: 'gita', closingIn: 14 },
  { title: 'Safari in Kenya', amount: '18000.00', currency: 'EUR', stage: 'negotiation', contact: 'carla', closingIn: -1 },
  { title: 'Road trip in Iceland', amount: '7400.00', currency: 'EUR', stage: 'qualification', contact: 'bernd', closingIn: 45 },
];

export interface SeedResult {
  created: boolean;
  contacts: number;
  opportunities: number;
}

export async function seedDemo(db: Db, now: Date, ownerEmail = 'sales@example.com'): Promise<SeedResult> {
  return db.transaction().execute(async (trx) => {
    const existing = await trx.selectFrom('contacts').select('id').where('email', '=', CONTACTS[0]!.email).executeTakeFirst();
    if (existing) return { created: false, contacts: 0, opportunities: 0 };
    const ids = new Map<string, number>();
    for (const c of CONTACTS) {
      const row = await trx.insertInto('contacts').values({
        email: c.email, first_name: c.first, last_name: c.last, locale: c.locale, time_zone: c.zone,
        unsubscribed_at: c.unsubscribed ? now : null,
      }).returning('id').executeTakeFirstOrThrow();
      ids.set(c.key, row.id);
    }
    for (const o of OPPORTUNITIES) {
      const contact = o.contact ? CONTACTS.find((c) => c.key === o.contact)! : null;
      await trx.insertInto('opportunities').values({
        title: o.title, amount: o.amount, currency: o.currency, stage: o.stage,
        primary_contact_id: contact ? ids.get(contact.key)! : null, owner_email: ownerEmail,
        // Steps after the closing date go to the owner, timed in the journey's default zone.
        closing_date: o.closingIn === null ? null
          : addDays(dueDay(now, o.closingIn < 0 ? 'Europe/Brussels' : contact?.zone ?? 'Europe/Brussels'), o.closingIn),
        stage_entered_at: new Date(now.getTime() - (o.enteredDaysAgo ?? 30) * 86_400_000),
      }).execute();
    }
    return { created: true, contacts: CONTACTS.length, opportunities: OPPORTUNITIES.length };
  });
}

/**
 * The local day whose 09:00 is the latest one already past: steps due that day are inside their
 * 24-hour window right now, whatever the hour of the demo.
 */
function dueDay(now: Date, zone: string): string {
  const safeZone = isValidTimeZone(zone) ? zone : 'Europe/Brussels';
  const today = localDate(now, safeZone);
  return localMinuteOfDay(now, safeZone) >= 9 * 60 ? today : addDays(today, -1);
}
