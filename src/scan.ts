/**
 * One scheduler pass: stream open opportunities in keyset pages, evaluate their steps at `now`,
 * write the suppressions, enqueue the sends. Memory holds one page at a time.
 */
import { sql } from 'kysely';
import type { Db } from './db/database.ts';
import { releaseStaleClaims, type NewDelivery } from './db/deliveries.ts';
import {
  closingDatePage, stageEnteredPage, type ClosingDateCursor, type OpportunityRow, type StageEnteredCursor,
} from './db/opportunities.ts';
import { loadSnapshots, type SnapshotNeeds } from './db/snapshots.ts';
import { evaluate, type StepEvaluation } from './journey/decide.ts';
import { addDays } from './journey/time.ts';
import type { Journey, Snapshot, Step } from './journey/types.ts';
import type { Logger } from './logger.ts';
import type { Metrics } from './metrics.ts';
import { deliverJobId, type DeliverJob } from './queue/queues.ts';

export interface ScanDeps {
  /** The primary: the scan lock and the suppressions it writes. */
  db: Db;
  /** Where pages are read from (a replica); the primary when absent. A lagging replica only costs
   * work: the worker decides again on the primary, and the indexes refuse a duplicate. */
  readDb?: Db;
  journey: Journey;
  /** Adds the jobs (with their deterministic ids); a job id already waiting is not added twice. */
  enqueue(jobs: { id: string; data: DeliverJob }[]): Promise<void>;
  logger: Logger;
  metrics?: Metrics;
  /** Release claims never handed to SMTP after this many milliseconds (real clock). @defaultValue 120000 */
  claimLeaseMs?: number;
}

export interface ScanOptions {
  /** Opportunities per keyset page. @defaultValue 500 */
  pageSize?: number;
  /** Wait for a scan running elsewhere to finish (true), or skip this pass (false). @defaultValue true */
  waitForLock?: boolean;
  /** Called after each page with the running totals (progress output of `tick`). */
  onProgress?: (summary: Readonly<ScanSummary>) => void;
}

export interface ScanSummary {
  /** Stale claims released before the pass (their steps are enqueued again by this pass). */
  releasedClaims: number;
  scanned: number;
  enqueued: number;
  suppressed: number;
  errors: number;
  skipped: boolean;
  ms: number;
}

const DAY = 86_400_000;
const SCAN_LOCK = 'nudge.scan';

export async function runScan(deps: ScanDeps, now: Date, options: ScanOptions = {}): Promise<ScanSummary> {
  const started = performance.now();
  const summary: ScanSummary = { releasedClaims: 0, scanned: 0, enqueued: 0, suppressed: 0, errors: 0, skipped: false, ms: 0 };
  // One scan at a time per database, however many processes: the lock is held on one pinned
  // connection and released when the pass ends (or the connection dies).
  await deps.db.connection().execute(async (conn) => {
    const key = sql`hashtextextended(${SCAN_LOCK}, 0)`;
    const { rows } = options.waitForLock ?? true
      ? await sql<{ ok: boolean }>`select true as ok from (select pg_advisory_lock(${key})) as locked`.execute(conn)
      : await sql<{ ok: boolean }>`select pg_try_advisory_lock(${key}) as ok`.execute(conn);
    if (!rows[0]?.ok) {
      summary.skipped = true;
      return;
    }
    try {
      summary.releasedClaims = await releaseStaleClaims(deps.db, deps.claimLeaseMs ?? 120_000);
      if (summary.releasedClaims > 0) deps.logger.warn({ released: summary.releasedClaims }, 'released claims of workers that died before handing the message to SMTP');
      await scanPasses(deps, now, options.pageSize ?? 500, summary, options.onProgress);
    } finally {
      await sql`select pg_advisory_unlock(hashtextextended(${SCAN_LOCK}, 0))`.execute(conn);
    }
  });
  summary.ms = Math.round(performance.now() - started);
  if (!summary.skipped) deps.metrics?.scan(summary);
  return summary;
}

async function scanPasses(
  deps: ScanDeps, now: Date, pageSize: number, summary: ScanSummary, onProgress?: ScanOptions['onProgress'],
): Promise<void> {
  await forEachScanPage(deps.readDb ?? deps.db, deps.journey, now, { pageSize }, async (rows, sub) => {
    await processPage(deps, sub, rows, now, summary);
    onProgress?.(summary);
  });
}

export interface PageOptions {
  pageSize: number;
  /** Also read opportunities whose steps fall due up to this many days after `now` (simulate). @defaultValue 0 */
  horizonDays?: number;
}

/**
 * Streams, in keyset pages, every open opportunity that may have a step to decide around `now`
 * (and up to `horizonDays` later), each page with the part of the journey it is read for:
 * closingDate steps by (closing_date, id), then stageEntered steps per stage by
 * (stage_entered_at, id). Memory holds two pages: the one processed and the next, read meanwhile.
 */
export async function forEachScanPage(
  db: Db, journey: Journey, now: Date, options: PageOptions,
  onPage: (rows: OpportunityRow[], journey: Journey) => Promise<void>,
): Promise<void> {
  const { pageSize } = options;
  const horizon = options.horizonDays ?? 0;
  const lookback = lookbackDays(journey);
  const closingSteps = journey.steps.filter((s) => s.trigger.kind === 'closingDate');
  if (closingSteps.length > 0) {
    const offsets = closingSteps.map((s) => (s.trigger.kind === 'closingDate' ? s.trigger.offsetDays : 0));
    const today = now.toISOString().slice(0, 10);
    // The due day is closing date + offset; it lies within [today - lookback, today + horizon + 2].
    const range = { from: addDays(today, -lookback - Math.max(...offsets)), to: addDays(today, horizon + 2 - Math.min(...offsets)) };
    const sub = { ...journey, steps: closingSteps };
    await keysetPages(pageSize, (after: ClosingDateCursor | null) => closingDatePage(db, range, after, pageSize),
      (last) => ({ closingDate: last.closing_date!, id: last.id }), (rows) => onPage(rows, sub));
  }
  for (const [stage, steps] of stageEnteredSteps(journey)) {
    const maxDays = Math.max(...steps.map((s) => (s.trigger.kind === 'stageEntered' ? s.trigger.daysAfter : 0)));
    const range = { from: new Date(now.getTime() - (maxDays + lookback + 1) * DAY), to: new Date(now.getTime() + DAY) };
    const sub = { ...journey, steps };
    await keysetPages(pageSize, (after: StageEnteredCursor | null) => stageEnteredPage(db, stage, range, after, pageSize),
      (last) => ({ stageEnteredAt: last.cursor, id: last.id }), (rows) => onPage(rows, sub));
  }
}

/**
 * Reads keyset pages until a short one, the next page's query running while the current page is
 * processed (at most two pages in memory).
 */
async function keysetPages<R, C>(
  pageSize: number, fetch: (after: C | null) => Promise<R[]>, cursorOf: (last: R) => C, onPage: (rows: R[]) => Promise<void>,
): Promise<void> {
  let next: Promise<R[]> | null = fetch(null);
  while (next) {
    const rows: R[] = await next;
    next = rows.length === pageSize ? fetch(cursorOf(rows[rows.length - 1]!)) : null;
    // A failed prefetch surfaces when awaited; until then it must not count as unhandled.
    next?.catch(() => {});
    await onPage(rows);
  }
}

/** Days a step can stay undecided past its due day: the longest window, weekends, time zones. */
function lookbackDays(journey: Journey): number {
  const longest = Math.max(0, ...journey.steps.map((s) => s.timing.windowMinutes));
  return Math.ceil(longest / 1440) + 3;
}

function stageEnteredSteps(journey: Journey): Map<string, Step[]> {
  const out = new Map<string, Step[]>();
  for (const s of journey.steps) {
    if (s.trigger.kind !== 'stageEntered') continue;
    out.set(s.trigger.stage, [...(out.get(s.trigger.stage) ?? []), s]);
  }
  return out;
}

export function snapshotNeeds(journey: Journey, now: Date): SnapshotNeeds {
  const cap = journey.defaults.frequencyCap;
  return {
    activities: journey.steps.some((s) => s.skipIfRecentActivityMinutes !== null),
    sentSince: cap ? new Date(now.getTime() - cap.perDays * DAY) : null,
  };
}

async function processPage(deps: ScanDeps, journey: Journey, rows: OpportunityRow[], now: Date, summary: ScanSummary): Promise<void> {
  if (rows.length === 0) return;
  summary.scanned += rows.length;
  const snapshots = await loadSnapshots(deps.readDb ?? deps.db, rows, snapshotNeeds(journey, now));
  const suppressions: NewDelivery[] = [];
  const jobs = new Map<string, DeliverJob>();
  const warned = new Set<number>();
  for (const snapshot of snapshots) {
    let evaluations: StepEvaluation[];
    try {
      evaluations = evaluate(snapshot, journey, now);
    } catch (error) {
      // A bad row must not stop the pass for every other opportunity.
      summary.errors += 1;
      deps.logger.error({ opportunityId: snapshot.opportunity.id, err: error }, 'scan: cannot evaluate opportunity');
      continue;
    }
    for (const e of evaluations) {
      const contactId = e.recipient?.contact?.id;
      if (e.recipient?.unknownZone && contactId !== undefined && !warned.has(contactId)) {
        warned.add(contactId);
        deps.logger.warn({ opportunityId: snapshot.opportunity.id, contactId }, 'unknown time zone on contact; using defaults.timeZone');
      }
      collect(deps, snapshot, e, now, suppressions, jobs);
    }
  }
  if (suppressions.length > 0) {
    const inserted = await deps.db.insertInto('deliveries').values(suppressions)
      .onConflict((oc) => oc.doNothing()).returning(['id', 'reason']).execute();
    summary.suppressed += inserted.length;
    for (const row of inserted) deps.metrics?.decision('suppressed', row.reason);
  }
  if (jobs.size > 0) {
    await deps.enqueue([...jobs].map(([id, data]) => ({ id, data })));
    summary.enqueued += jobs.size;
  }
}

function collect(
  deps: ScanDeps, snapshot: Snapshot, e: StepEvaluation, now: Date,
  suppressions: NewDelivery[], jobs: Map<string, DeliverJob>,
): void {
  const opportunityId = snapshot.opportunity.id;
  if (e.verdict.kind === 'send') {
    const data: DeliverJob = { opportunityId, stepId: e.step.id, closingDate: e.closingDate, occurrence: e.occurrence };
    jobs.set(deliverJobId(data), data);
  } else if (e.verdict.kind === 'suppress' && e.record) {
    suppressions.push({
      opportunity_id: opportunityId, step_id: e.step.id, contact_id: e.recipient?.contact?.id ?? null,
      recipient: e.recipient?.address ?? '', status: 'suppressed', reason: e.verdict.reason,
      due_at: e.due?.dueAt ?? null, decided_at: now, closing_date: e.closingDate, occurrence: e.occurrence,
      detail: e.verdict.detail,
    });
    deps.logger.info({ opportunityId, stepId: e.step.id, reason: e.verdict.reason }, 'suppressed');
  }
}
