/**
 * One scheduler pass: stream open opportunities in keyset pages, evaluate their steps at `now`,
 * write the suppressions, enqueue the sends. Memory holds a few pages at a time, whatever the
 * table's size: in each chain read at once (`src/scan-pages.ts`), one being processed and the
 * next being read or prepared, and the decisions of those waiting to be written.
 */
import { sql } from 'kysely';
import { timestamp, type Db } from './db/database.ts';
import { releaseStaleClaims, type NewDelivery } from './db/deliveries.ts';
import type { ScanRow } from './db/opportunities.ts';
import { decisionsAbout, decisionsAtClosingDates, loadSnapshots, type SnapshotNeeds } from './db/snapshots.ts';
import { mayNeedDecision, type TriageDecision, type TriageOpportunity } from './journey/triage.ts';
import { evaluate, type StepEvaluation } from './journey/decide.ts';
import type { DecisionSnapshot, Journey, Stage } from './journey/types.ts';
import type { Logger } from './logger.ts';
import type { Metrics } from './metrics.ts';
import { deliverJobId, type DeliverJob } from './queue/queues.ts';
import { DEFAULT_PAGE_SIZE, forEachScanPage, position, SCAN_CHAINS, type ScanPage } from './scan-pages.ts';
import { settleAll } from './settle.ts';

export interface ScanDeps {
  /** The primary: the scan lock and the suppressions it writes. */
  db: Db;
  /** Where pages are read from (a replica); the primary when absent. A lagging replica only costs
   * work: the worker decides again on the primary, and the indexes refuse a duplicate. */
  readDb?: Db;
  journey: Journey;
  /**
   * Adds the jobs (with their deterministic, distinct ids); a job id already in the queue is not
   * added twice. Resolves to how many were added: `enqueued` counts those, not the ones already in
   * the queue (waiting, delayed for a retry, or active).
   */
  enqueue(jobs: { id: string; data: DeliverJob }[]): Promise<number>;
  logger: Logger;
  metrics?: Metrics;
  /** Release claims never handed to SMTP after this many milliseconds (real clock). @defaultValue 120000 */
  claimLeaseMs?: number;
  /**
   * Keyset chains read at once (`forEachScanPage`): with more than one, pages are decided and their
   * jobs queued in the order they are read, not in the scan's order. @defaultValue SCAN_CHAINS
   */
  chains?: number;
}

export interface ScanOptions {
  /** Opportunities per keyset page. @defaultValue DEFAULT_PAGE_SIZE */
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
  /** Send jobs added to the queue (one already there under the same id, waiting, delayed or active, is not counted). */
  enqueued: number;
  /** Suppressions recorded (one already recorded is not counted). */
  suppressed: number;
  errors: number;
  skipped: boolean;
  ms: number;
}

const DAY = 86_400_000;
export const SCAN_LOCK = 'nudge.scan';

export async function runScan(deps: ScanDeps, now: Date, options: ScanOptions = {}): Promise<ScanSummary> {
  const started = performance.now();
  const summary: ScanSummary = { releasedClaims: 0, scanned: 0, enqueued: 0, suppressed: 0, errors: 0, skipped: false, ms: 0 };
  // One scan at a time per database, however many processes: the lock belongs to a transaction
  // left open for the pass on a connection of its own, released when the pass ends (or the
  // connection dies). A transaction's, not the session's: through a pooler that pools by
  // transaction (PgBouncer's transaction mode), each statement of a session may run on another
  // server connection, and a session's lock taken on one and released on another stays held by
  // that first connection until it closes: later scans would wait for it or skip. The transaction
  // is read committed whatever the server's default, so it takes no snapshot between its
  // statements, and writes nothing: it holds back no vacuum. It is idle while the pass runs, which
  // a server's timeouts on idle or long transactions must not end: they are off for it alone.
  // How the pass ended, set inside the lock's transaction: its outcome must outlive that
  // transaction's own failure.
  const pass: { done?: true; failed?: { error: unknown } } = {};
  try {
    await deps.db.transaction().setIsolationLevel('read committed').execute(async (trx) => {
      // Constants, inlined: a statement without parameters goes by the simple protocol, which
      // keeps no portal (and with it no snapshot) once it has run. `transaction_timeout` exists
      // from PostgreSQL 17 on.
      await sql`select set_config('idle_in_transaction_session_timeout', '0', true),
        (select set_config('transaction_timeout', '0', true) where current_setting('transaction_timeout', true) is not null)`.execute(trx);
      const key = sql`hashtextextended(${sql.lit(SCAN_LOCK)}, 0)`;
      const { rows } = options.waitForLock ?? true
        ? await sql<{ ok: boolean }>`select true as ok from (select pg_advisory_xact_lock(${key})) as locked`.execute(trx)
        : await sql<{ ok: boolean }>`select pg_try_advisory_xact_lock(${key}) as ok`.execute(trx);
      if (!rows[0]?.ok) {
        summary.skipped = true;
        return;
      }
      // The pass's own failure is the one reported: the lock's transaction, which wrote nothing,
      // still ends with a COMMIT, and a failure of that (its connection lost meanwhile) does not
      // stand in for the pass's.
      try {
        summary.releasedClaims = await releaseStaleClaims(deps.db, deps.claimLeaseMs ?? 120_000);
        if (summary.releasedClaims > 0) deps.logger.warn({ released: summary.releasedClaims }, 'released claims of workers that died before handing the message to SMTP');
        await scanPasses(deps, now, options.pageSize ?? DEFAULT_PAGE_SIZE, summary, options.onProgress);
        pass.done = true;
      } catch (error) {
        pass.failed = { error };
      }
    });
  } catch (error) {
    // The lock's transaction failed: before the pass (no lock, no pass: that is the failure), or
    // after it, its connection lost meanwhile (PostgreSQL restarted, the session ended). A pass
    // that did its work is not a failed pass: the lock it lost only let another pass overlap
    // it, whose decisions the database keeps from being made twice.
    if (!pass.done && !pass.failed) throw error;
    if (pass.done) deps.logger.warn({ err: (error as Error).message }, 'scan: the connection holding its lock was lost during the pass; the pass itself completed');
  }
  if (pass.failed) throw pass.failed.error;
  summary.ms = Math.round(performance.now() - started);
  if (!summary.skipped) deps.metrics?.scan(summary);
  return summary;
}

async function scanPasses(
  deps: ScanDeps, now: Date, pageSize: number, summary: ScanSummary, onProgress?: ScanOptions['onProgress'],
): Promise<void> {
  const readDb = deps.readDb ?? deps.db;
  const writes = new WriteBehind();
  try {
    await forEachScanPage<DecidedPage>(readDb, deps.journey, now, { pageSize, chains: deps.chains ?? SCAN_CHAINS }, async (page) => {
      await processPage(deps, page, summary, writes);
      onProgress?.(summary);
    }, (page) => preparePage(deps, readDb, page, now));
  } catch (error) {
    // No write is left running behind a failed pass; its own failure is the one reported.
    await writes.drain().catch(() => {});
    throw error;
  }
  await writes.drain();
}

export function snapshotNeeds(journey: Journey, now: Date): SnapshotNeeds {
  const cap = journey.defaults.frequencyCap;
  return {
    roles: journey.steps.some((s) => s.to.kind === 'role'),
    activities: journey.steps.some((s) => s.skipIfRecentActivityMinutes !== null),
    sentSince: cap ? new Date(now.getTime() - cap.perDays * DAY) : null,
  };
}

/** A page decided: what to write and enqueue for it; neither its rows nor its snapshots are kept. */
interface DecidedPage {
  /** Rows the page held. */
  scanned: number;
  /** Opportunities `evaluate` could not judge. */
  errors: number;
  suppressions: NewDelivery[];
  jobs: Map<string, DeliverJob>;
  /** Its log lines, written when the page is processed: a page read ahead of a failed pass logs nothing. */
  logs: (() => void)[];
}

/**
 * Triage, then the snapshots of what is left, then `evaluate`. Most rows in range are settled (a
 * step not due yet, already sent, or decided when its window closed: `src/journey/triage.ts`),
 * which their decisions alone tell; only the rest get their snapshots. Decided as soon as they are
 * loaded, so that a page waiting for its turn to write holds its few decisions, not its
 * snapshots; chained, not awaited in one function, so that nothing holds the page's rows once
 * triage is done.
 */
function preparePage(deps: ScanDeps, db: Db, page: ScanPage, now: Date): Promise<DecidedPage> {
  const { journey } = page;
  const scanned = page.rows.length;
  return openRows(db, page, now)
    .then((open) => loadSnapshots(db, open, snapshotNeeds(journey, now)))
    .then((snapshots) => decidePage(deps, snapshots, journey, now, scanned));
}

/** The rows of `page` triage leaves open. */
async function openRows(db: Db, { rows, journey, pass }: ScanPage, now: Date): Promise<ScanRow[]> {
  if (rows.length === 0) return [];
  const decisions = pass === 'closingDate'
    ? await decisionsAtClosingDates(db, position(rows[0]!), position(rows[rows.length - 1]!))
    : await decisionsAbout(db, rows.map((r) => r.id));
  const stages = new Map<string, Stage>();
  return rows.filter((row) => {
    try {
      return mayNeedDecision(triageView(row, pass, stages), decisions.get(row.id) ?? NO_DECISIONS, journey, now);
    } catch {
      // A row triage cannot read goes to `evaluate`, which reports it and carries on.
      return true;
    }
  });
}

const NO_DECISIONS: readonly TriageDecision[] = Object.freeze([]);

/**
 * What triage reads of a row, built for each of a page's rows: its stage shared by the page's
 * rows in that stage (one join, one stage row), and the time it entered it parsed only in the
 * stage-entered pass, the only one with a step that reads it.
 */
function triageView(row: ScanRow, pass: ScanPage['pass'], stages: Map<string, Stage>): TriageOpportunity {
  let stage = stages.get(row.stage);
  if (!stage) {
    stage = { key: row.stage, label: row.stage_label, probability: row.stage_probability, outcome: row.stage_outcome, position: row.stage_position };
    stages.set(row.stage, stage);
  }
  return {
    closingDate: row.closing_date, stage, amount: row.amount, primaryContactId: row.primary_contact_id, ownerEmail: row.owner_email,
    stageEnteredAt: pass === 'stageEntered' ? timestamp(row.stage_entered_at) : null,
  };
}

function decidePage(deps: ScanDeps, snapshots: readonly DecisionSnapshot[], journey: Journey, now: Date, scanned: number): DecidedPage {
  const page: DecidedPage = { scanned, errors: 0, suppressions: [], jobs: new Map(), logs: [] };
  const warned = new Set<number>();
  for (const snapshot of snapshots) {
    let evaluations: StepEvaluation[];
    try {
      evaluations = evaluate(snapshot, journey, now);
    } catch (error) {
      // A bad row must not stop the pass for every other opportunity.
      page.errors += 1;
      page.logs.push(() => deps.logger.error({ opportunityId: snapshot.opportunity.id, err: error }, 'scan: cannot evaluate opportunity'));
      continue;
    }
    for (const e of evaluations) {
      const contactId = e.recipient?.contact?.id;
      if (e.recipient?.unknownZone && contactId !== undefined && !warned.has(contactId)) {
        warned.add(contactId);
        page.logs.push(() => deps.logger.warn({ opportunityId: snapshot.opportunity.id, contactId }, 'unknown time zone on contact; using defaults.timeZone'));
      }
      collect(deps, snapshot, e, now, page);
    }
  }
  return page;
}

/** A decided page's writes, in page order, behind the scan. */
async function processPage(deps: ScanDeps, page: DecidedPage, summary: ScanSummary, writes: WriteBehind): Promise<void> {
  const { suppressions, jobs } = page;
  summary.scanned += page.scanned;
  summary.errors += page.errors;
  for (const log of page.logs) log();
  if (suppressions.length === 0 && jobs.size === 0) return;
  // Written behind the scan, which goes on deciding the next page meanwhile.
  await writes.add(async () => {
    if (suppressions.length > 0) {
      const inserted = await deps.db.insertInto('deliveries').values(suppressions)
        .onConflict((oc) => oc.doNothing()).returning(['id', 'reason']).execute();
      summary.suppressed += inserted.length;
      for (const row of inserted) deps.metrics?.decision('suppressed', row.reason);
    }
    if (jobs.size > 0) {
      summary.enqueued += await deps.enqueue([...jobs].map(([id, data]) => ({ id, data })));
    }
  });
}

/**
 * A page's writes (suppressions, then jobs) run one page after another, in order, while later
 * pages are decided; `add` waits when more than `WRITES_BEHIND` are pending. The pass ends with
 * `drain`: every write done, the first failure thrown.
 */
class WriteBehind {
  private readonly pending: Promise<void>[] = [];

  async add(write: () => Promise<void>): Promise<void> {
    const previous = this.pending[this.pending.length - 1] ?? Promise.resolve();
    const next = previous.then(write);
    // A failure surfaces in `add` or `drain`; until then it must not count as unhandled.
    next.catch(() => {});
    this.pending.push(next);
    if (this.pending.length > WRITES_BEHIND) await this.pending.shift();
  }

  async drain(): Promise<void> {
    await settleAll(this.pending.splice(0));
  }
}

const WRITES_BEHIND = 2;

function collect(deps: ScanDeps, snapshot: DecisionSnapshot, e: StepEvaluation, now: Date, page: DecidedPage): void {
  const opportunityId = snapshot.opportunity.id;
  if (e.verdict.kind === 'send') {
    const data: DeliverJob = { opportunityId, stepId: e.step.id, closingDate: e.closingDate, occurrence: e.occurrence };
    page.jobs.set(deliverJobId(data), data);
  } else if (e.verdict.kind === 'suppress' && e.record) {
    const reason = e.verdict.reason;
    page.suppressions.push({
      opportunity_id: opportunityId, step_id: e.step.id, contact_id: e.recipient?.contact?.id ?? null,
      recipient: e.recipient?.address ?? '', status: 'suppressed', reason,
      due_at: e.due?.dueAt ?? null, decided_at: now, closing_date: e.closingDate, occurrence: e.occurrence,
      detail: e.verdict.detail,
    });
    page.logs.push(() => deps.logger.info({ opportunityId, stepId: e.step.id, reason }, 'suppressed'));
  }
}
