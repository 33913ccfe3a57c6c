/**
 * Reading opportunities: the scan's keyset pages and single loads. Every query takes `db` first;
 * `toOpportunity` (a whole row) and `toDecisionOpportunity` (a scan page's row) are the only
 * places a row becomes a domain object.
 */
import { sql } from 'kysely';
import { executePrepared, timestamp, type Db } from './database.ts';
import type { DecisionOpportunity, IsoDate, Opportunity, Outcome, Stage } from '../journey/types.ts';

/** An opportunity's row as a scan page reads it: what deciding needs (`toDecisionOpportunity`). */
export interface ScanRow {
  id: number;
  amount: string | null;
  closing_date: string | null;
  stage: string;
  primary_contact_id: number | null;
  owner_email: string | null;
  /** Text when read through the scan's pool (`textTimestampParsers`); `toDecisionOpportunity` reads either. */
  stage_entered_at: Date | string;
  stage_label: string;
  stage_probability: number;
  stage_outcome: Outcome;
  stage_position: number;
}

/** An opportunity's whole row (`toOpportunity`). */
export interface OpportunityRow extends ScanRow {
  title: string;
  currency: string;
  created_at: Date | string;
  updated_at: Date | string;
}

export function toOpportunity(row: OpportunityRow): Opportunity {
  return {
    ...toDecisionOpportunity(row), title: row.title, currency: row.currency.trim(),
    createdAt: timestamp(row.created_at), updatedAt: timestamp(row.updated_at),
  };
}

/** A scan page's row (`ScanRow`), as deciding reads it. */
export function toDecisionOpportunity(row: ScanRow): DecisionOpportunity {
  const stage: Stage = {
    key: row.stage, label: row.stage_label, probability: row.stage_probability,
    outcome: row.stage_outcome, position: row.stage_position,
  };
  return {
    id: row.id, amount: row.amount, closingDate: row.closing_date, stage, primaryContactId: row.primary_contact_id,
    ownerEmail: row.owner_email, stageEnteredAt: timestamp(row.stage_entered_at),
  };
}

/** The columns deciding reads (`ScanRow`): the scan's pages read no others. */
const DECISION_COLUMNS = [
  'o.id', 'o.amount', 'o.closing_date', 'o.stage', 'o.primary_contact_id', 'o.owner_email', 'o.stage_entered_at',
  's.label as stage_label', 's.probability as stage_probability', 's.outcome as stage_outcome', 's.position as stage_position',
] as const;

/**
 * The scan's pages: the columns deciding reads, and not the title, currency or timestamps, which
 * only rendering needs (the worker reads the whole row again at send time). Each page is held
 * while its decisions are read, and the scavenges promote what is held: over 1,000,000
 * opportunities the scan's heap peaked at 69–93 MB instead of 87–111 (docs/benchmarks.md, run P).
 */
function selectScanRows(db: Db) {
  return db.selectFrom('opportunities as o')
    .innerJoin('stages as s', 's.key', 'o.stage')
    .select(DECISION_COLUMNS);
}

/** The whole row (`OpportunityRow`): a scan page's columns and what rendering reads besides. */
function selectOpportunities(db: Db) {
  return selectScanRows(db).select(['o.title', 'o.currency', 'o.created_at', 'o.updated_at']);
}

export interface ClosingDateCursor {
  closingDate: IsoDate;
  id: number;
}

/**
 * One keyset page of open opportunities whose closing date is in [from, to], after `after`, in
 * (closing_date, id) order. The row-value comparison lets PostgreSQL start the index scan at the
 * cursor; the OR/AND spelling of the same condition measured ten times slower.
 */
export async function closingDatePage(
  db: Db, range: { from: IsoDate; to: IsoDate }, after: ClosingDateCursor | null, limit: number,
): Promise<ScanRow[]> {
  let q = selectScanRows(db)
    .where('s.outcome', '=', 'open')
    .where('o.closing_date', '>=', range.from)
    .where('o.closing_date', '<=', range.to);
  if (after) q = q.where(sql<boolean>`(o.closing_date, o.id) > (${after.closingDate}::date, ${after.id}::bigint)`);
  return executePrepared(db, q.orderBy('o.closing_date').orderBy('o.id').limit(limit));
}

export interface StageEnteredCursor {
  /** PostgreSQL's own text of the timestamp: a JavaScript Date would drop its microseconds. */
  stageEnteredAt: string;
  id: number;
}

/**
 * One keyset page of opportunities in `stage` that entered it within [from, to]. Rows carry
 * `cursor`, the exact timestamp as text, for the next page: a bulk stage change gives many rows
 * the same microsecond, and a millisecond cursor would return the same page forever.
 */
export async function stageEnteredPage(
  db: Db, stage: string, range: { from: Date; to: Date }, after: StageEnteredCursor | null, limit: number,
): Promise<(ScanRow & { cursor: string })[]> {
  let q = selectScanRows(db).select(sql<string>`o.stage_entered_at::text`.as('cursor'))
    .where('o.stage', '=', stage)
    .where('o.stage_entered_at', '>=', range.from)
    .where('o.stage_entered_at', '<=', range.to);
  if (after) q = q.where(sql<boolean>`(o.stage_entered_at, o.id) > (${after.stageEnteredAt}::timestamptz, ${after.id}::bigint)`);
  return executePrepared(db, q.orderBy('o.stage_entered_at').orderBy('o.id').limit(limit));
}

/** One opportunity, or null. */
export async function findOpportunity(db: Db, id: number): Promise<OpportunityRow | null> {
  return (await selectOpportunities(db).where('o.id', '=', id).executeTakeFirst()) ?? null;
}

export async function listStages(db: Db): Promise<Stage[]> {
  return db.selectFrom('stages').selectAll().orderBy('position').orderBy('key').execute();
}
