/**
 * What the forecast reads: open opportunities with their stage's probability, streamed in keyset
 * pages over (closing_date, id) — the index `opportunities_closing_scan` — so memory holds one page
 * whatever the size of the table. Reads only; writes nothing.
 */
import { sql } from 'kysely';
import type { Db } from './database.ts';
import type { ForecastRow } from '../forecast.ts';
import type { IsoDate } from '../journey/types.ts';

export interface ForecastCursor {
  closingDate: IsoDate;
  id: number;
}

export interface ForecastPageRow {
  id: number;
  closing_date: IsoDate;
  amount: string | null;
  currency: string;
  stage: string;
  stage_position: number;
  stage_probability: number;
}

export interface ForecastReadOptions {
  /** Opportunities per keyset page. @defaultValue 1000 */
  pageSize?: number;
}

export interface ForecastPage {
  rows: ForecastRow[];
  /** Where the next page starts; null when this page was the last. */
  next: ForecastCursor | null;
}

/**
 * One keyset page of open opportunities whose closing date is before `before` (every past date
 * included: the stale ones are reported too), after `after`, in (closing_date, id) order.
 * Opportunities without a closing date are not in it. The row-value comparison lets PostgreSQL
 * start the index scan at the cursor.
 */
export async function forecastPage(db: Db, before: IsoDate, after: ForecastCursor | null, limit: number): Promise<ForecastPage> {
  let q = db.selectFrom('opportunities as o')
    .innerJoin('stages as s', 's.key', 'o.stage')
    .select(['o.id', 'o.closing_date', 'o.amount', 'o.currency', 'o.stage', 's.position as stage_position', 's.probability as stage_probability'])
    // The cursor as PostgreSQL writes the day: `closing_date` is read bounded (a day BC as 1000-01-01),
    // and a page ending on one must go on from that day itself.
    .select(sql<string>`o.closing_date::text`.as('cursor_day'))
    .where('s.outcome', '=', 'open')
    .where('o.closing_date', '<', before);
  if (after) q = q.where(sql<boolean>`(o.closing_date, o.id) > (${after.closingDate}::date, ${after.id}::bigint)`);
  const rows = (await q.orderBy('o.closing_date').orderBy('o.id').limit(limit).execute()) as (ForecastPageRow & { cursor_day: string })[];
  const last = rows.at(-1);
  return { rows: rows.map(toForecastRow), next: last && rows.length === limit ? { closingDate: last.cursor_day, id: last.id } : null };
}

export function toForecastRow(row: ForecastPageRow): ForecastRow {
  return {
    id: row.id, closingDate: row.closing_date, amount: row.amount, currency: row.currency, stage: row.stage,
    stagePosition: row.stage_position, probability: row.stage_probability,
  };
}

/** How many open opportunities have no closing date (counted, not read). */
export async function countOpenWithoutClosingDate(db: Db): Promise<number> {
  const row = await db.selectFrom('opportunities as o')
    .innerJoin('stages as s', 's.key', 'o.stage')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('s.outcome', '=', 'open')
    .where('o.closing_date', 'is', null)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/**
 * Hands every open opportunity closing before `before` to `visit`, one page at a time, and
 * returns how many open ones have no closing date. All pages are read in one repeatable-read,
 * read-only transaction, so a closing date moved during the read is counted once, not twice.
 */
export async function readForecastRows(
  db: Db, before: IsoDate, visit: (rows: readonly ForecastRow[]) => void, options: ForecastReadOptions = {},
): Promise<{ withoutClosingDate: number }> {
  const pageSize = options.pageSize ?? 1000;
  return db.transaction().setIsolationLevel('repeatable read').setAccessMode('read only').execute(async (trx) => {
    let after: ForecastCursor | null = null;
    do {
      const page = await forecastPage(trx, before, after, pageSize);
      visit(page.rows);
      after = page.next;
    } while (after);
    return { withoutClosingDate: await countOpenWithoutClosingDate(trx) };
  });
}
