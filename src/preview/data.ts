/**
 * What the preview reads from the CRM database: opportunities to pick from, one opportunity's
 * snapshot, the simulate calendar and the forecast. Reads only. Every function takes `db` first;
 * the caller decides what an unreachable database means (the built-in sample opportunity).
 */
import { bigintId, type Db } from '../db/database.ts';
import { readForecastRows } from '../db/forecast-rows.ts';
import { loadSnapshot } from '../db/snapshots.ts';
import { ForecastTally, type Forecast } from '../forecast.ts';
import { SAMPLE_ID } from '../email/test-email.ts';
import { addDays, localDate } from '../journey/time.ts';
import type { Contact, Journey, Snapshot, Stage } from '../journey/types.ts';
import { runSimulation, type Simulation } from '../simulate.ts';

/** How many days the calendar looks ahead. */
export const CALENDAR_DAYS = 30;

/** One line of the opportunity picker. */
export interface OpportunityChoice {
  id: number;
  title: string;
  stage: string;
  closingDate: string | null;
}

export interface OpportunitySearch {
  choices: OpportunityChoice[];
  /** More match than `choices` holds. */
  more: boolean;
}

/**
 * Opportunities whose title contains `text` (case-insensitive), or whose id is `text` (`31` or
 * `#31`, as the list shows ids); the first `limit` by id, the first ones when `text` is empty.
 */
export async function searchOpportunities(db: Db, text: string, limit = 20): Promise<OpportunitySearch> {
  let q = db.selectFrom('opportunities as o').innerJoin('stages as s', 's.key', 'o.stage')
    .select(['o.id', 'o.title', 'o.closing_date', 's.label as stage']).orderBy('o.id').limit(limit + 1);
  const typed = text.trim();
  const wanted = /^#\d+$/.test(typed) ? typed.slice(1) : typed;
  if (wanted) {
    // The title is matched literally: % and _ typed by the marketer are not wildcards.
    const pattern = `%${wanted.replace(/[\\%_]/g, '\\$&')}%`;
    const id = bigintId(wanted);
    q = q.where((eb) => eb.or([
      eb('o.title', 'ilike', pattern),
      ...(id === null ? [] : [eb('o.id', '=', id)]),
    ]));
  }
  const rows = await q.execute();
  return { choices: rows.slice(0, limit).map((r) => ({ id: r.id, title: r.title, stage: r.stage, closingDate: r.closing_date })), more: rows.length > limit };
}

/** The lowest opportunity id, or null when the table is empty. */
export async function firstOpportunityId(db: Db): Promise<number | null> {
  const row = await db.selectFrom('opportunities').select('id').orderBy('id').limit(1).executeTakeFirst();
  return row?.id ?? null;
}

/** One opportunity with its contacts, as the worker would load it (without activities). */
export function opportunitySnapshot(db: Db, id: number): Promise<Snapshot | null> {
  return loadSnapshot(db, id, { activities: false, sentSince: null });
}

/** `nudge simulate --days 30` as of `now`. */
export function calendar(db: Db, journey: Journey, now: Date): Promise<Simulation> {
  return runSimulation(db, journey, now, CALENDAR_DAYS);
}

/** `nudge forecast` as of `now`, counted in `timeZone`. */
export async function forecast(db: Db, timeZone: string, now: Date): Promise<Forecast> {
  const tally = new ForecastTally(now, timeZone);
  const { withoutClosingDate } = await readForecastRows(db, tally.horizon, (rows) => {
    for (const row of rows) tally.add(row);
  });
  tally.addWithoutClosingDate(withoutClosingDate);
  return tally.result();
}

const SAMPLE_STAGE: Stage = { key: 'proposal', label: 'Proposal', probability: 50, outcome: 'open', position: 3 };

/**
 * The built-in sample: what a marketer with only the templates folder previews with. Its closing
 * date is two weeks after today, so date sentences read naturally.
 */
export function sampleSnapshot(now: Date): Snapshot {
  const contact: Contact = {
    id: SAMPLE_ID, email: 'alex.sample@example.com', firstName: 'Alex', lastName: 'Sample', locale: 'en',
    timeZone: 'Europe/Brussels', unsubscribedAt: null, bouncedAt: null,
  };
  const today = localDate(now, 'UTC');
  return {
    opportunity: {
      id: SAMPLE_ID, title: 'Trip to the USA', amount: '12000.00', currency: 'EUR', closingDate: addDays(today, 14),
      stage: SAMPLE_STAGE, primaryContactId: contact.id, ownerEmail: 'sales@example.com',
      stageEnteredAt: now, createdAt: now, updatedAt: now,
    },
    contacts: new Map([[contact.id, contact]]),
    roles: [],
    activities: [],
    history: [],
    sentToContact: new Map(),
  };
}
