/**
 * One delivery job: lock and reload the opportunity, decide again at `now`, then suppress (a row)
 * or render, send and record the outcome.
 *
 * Each send is one transaction, from the decision to the handover. The opportunity and its
 * contacts stay share-locked, and each contact's advisory lock held, while the SMTP client sets up
 * the connection, the envelope and the message's body. Before the final dot (the one byte
 * sequence that makes the server keep a message) the send is claimed (a `deliveries` row, status
 * `unknown`, handed over, under the unique index `deliveries_spent`) and the transaction commits;
 * the dot follows the COMMIT's write at once (src/db/commit-hook.ts).
 *
 * - Fresh at send time: a CRM change to the rows the decision read either committed before the
 *   decision or waits until the message is handed over. No second load is needed at handover.
 * - Exactly once in effect: a process that dies leaves the claim and the complete message, or
 *   neither; the claim it could not finish stays `unknown`, never a second email. A duplicate job
 *   waits on the contact's lock, then finds the claim and sends nothing. A failure before the
 *   COMMIT abandons the message unfinished; a COMMIT that fails after it went out has its claim
 *   written again when the send ends (kept in the job's data until it is: the job's next attempt
 *   records it rather than send). The outcome is recorded after the COMMIT, each write tried
 *   again while PostgreSQL cannot be reached (src/send-outcome.ts).
 * - CRM writers wait a bounded time: a send whose server has not asked for the message within
 *   `handoverTimeoutMs` gives up (rolled back, nothing claimed, the gate answers no when it is
 *   reached) and the job is retried with backoff.
 */
import type { Db } from './db/database.ts';
import { armCommit } from './db/commit-hook.ts';
import { claimSend, recordDecision, type ClaimRow, type NewDelivery } from './db/deliveries.ts';
import { lockAndLoadSnapshot, StaleRolesError } from './db/locked-snapshot.ts';
import { composeEmail, templateContext, type ComposeSettings } from './email/compose.ts';
import type { Mailer, OutgoingEmail } from './email/mailer.ts';
import { TemplateError, type Templates } from './email/templates.ts';
import { decideJob, type JobAction } from './journey/decide-job.ts';
import type { FailureReason, Journey, Snapshot } from './journey/types.ts';
import type { Logger } from './logger.ts';
import type { RepeatLimitedLog } from './log-repeats.ts';
import { noMetrics, type Metrics } from './metrics.ts';
import type { DeliverJob } from './queue/queues.ts';
import { snapshotNeeds } from './scan.ts';
import { startSend, type InFlight } from './send-gate.ts';
import {
  claimAfterFailedCommit, finishSend, logDeferral, recordLeftOver, UnrecordedSends, withdraw, type Claimed, type KeepJobData,
} from './send-outcome.ts';

export interface DeliverDeps {
  db: Db;
  mailer: Mailer;
  /** The last good templates and journey (a bad edit keeps the previous version). */
  templates(): Templates;
  journey(): Journey;
  compose: ComposeSettings;
  logger: Logger;
  metrics?: Metrics;
  /**
   * Milliseconds a started SMTP send may take until the server asks for the message (the body's
   * transfer is not counted) while the rows it was decided on stay locked; after that it is deferred.
   * @defaultValue 5000
   */
  handoverTimeoutMs?: number;
  /**
   * The process's repeat-limited log (src/log-repeats.ts), shared by its jobs: while the SMTP
   * server cannot be reached, or answers 421, every send is deferred at each attempt, which this
   * says once a minute (per error) rather than once per send. Without it, each deferral is a line
   * of its own.
   */
  repeats?: RepeatLimitedLog;
}

export interface DeliverResult {
  sent: number;
  suppressed: number;
  failed: number;
  unknown: number;
  skipped: number;
}

/** Thrown when SMTP deferred a send: the job is retried with backoff (nothing is claimed). */
export class DeferredError extends Error {
  override name = 'DeferredError';
}

const DEFAULT_HANDOVER_TIMEOUT_MS = 5_000;

/** Reads of one job refused for roles that changed meanwhile, before the job is retried with backoff. */
const STALE_READS = 3;

/** One job being delivered: what every step of it needs. */
interface Run {
  deps: DeliverDeps;
  metrics: Metrics;
  journey: Journey;
  job: DeliverJob;
  now: Date;
  result: DeliverResult;
  /** Recipients already dealt with by an earlier transaction of this job. */
  done: Set<string>;
  /** Sends completed but not yet recorded, kept in the job's data (src/send-outcome.ts). */
  unrecorded: UnrecordedSends;
}

/** What one transaction did: rows to count once it committed, and the send it claimed or deferred. */
interface Step {
  /** Rows written, counted and logged once the transaction committed (a line before would say what may not be). */
  written: { status: 'suppressed' | 'failed'; reason: string; log: () => void }[];
  claimed: Claimed | null;
  /** The SMTP reply code (or `connection`) of a send deferred before the handover. */
  deferred: string | null;
  /** A send to another recipient of this job is still to be done, in a transaction of its own. */
  more: boolean;
  /** The send started in this transaction, withdrawn if the transaction does not commit. */
  flight: InFlight | null;
}

/** The transaction gave up waiting for the handover: rolled back, the send withdrawn. */
class HandoverTimeout extends Error {
  override name = 'HandoverTimeout';
}

/**
 * Delivers one job. `keep` replaces the job's data in the queue: a send that was completed but
 * could not be recorded is kept there, and the job's next attempt records it instead of sending.
 */
export async function deliver(deps: DeliverDeps, job: DeliverJob, now: Date, keep?: KeepJobData): Promise<DeliverResult> {
  const result: DeliverResult = { sent: 0, suppressed: 0, failed: 0, unknown: 0, skipped: 0 };
  const run: Run = {
    deps, metrics: deps.metrics ?? noMetrics, journey: deps.journey(), job, now, result, done: new Set(),
    unrecorded: new UnrecordedSends(job, deps.compose, deps.logger, keep),
  };
  try {
    return await deliverJob(run);
  } finally {
    // The job ends (or fails, to be retried) only once what it kept in its data is there.
    await run.unrecorded.written();
  }
}

async function deliverJob(run: Run): Promise<DeliverResult> {
  const { deps, job, result } = run;
  // First what an earlier attempt sent and could not record: recorded, not sent again.
  for (const send of run.unrecorded.left) {
    if (await recordLeftOver(run, send)) run.done.add(recipientKey(send.row.contact_id, send.row.recipient));
  }
  let deferred: string | null = null;
  let staleReads = 0;
  for (let more = true; more;) {
    const step: Step = { written: [], claimed: null, deferred: null, more: false, flight: null };
    try {
      await deps.db.transaction().execute((trx) => decideAndHandOver(run, trx, step));
    } catch (error) {
      // Read while a CRM change of its roles committed, before anything was decided: read again.
      if (error instanceof StaleRolesError && staleReads++ < STALE_READS) continue;
      if (step.claimed?.opened) {
        // The COMMIT went out with the message's final dot, and did not come back as committed.
        await claimAfterFailedCommit(run, step.claimed, error);
        throw error;
      }
      // Rolled back (the handover timed out, a statement failed) before the COMMIT: nothing was
      // claimed, so the message must not go. Wait for the send to end, then retry the job.
      if (step.flight) await withdraw(step.flight);
      if (step.claimed) await withdraw(step.claimed.flight);
      if (!(error instanceof HandoverTimeout)) throw error;
      run.metrics.deferred();
      deps.logger.warn({ opportunityId: job.opportunityId, stepId: job.stepId }, 'smtp did not ask for the message in time; will retry');
      throw new DeferredError(`SMTP did not ask for the message within ${handoverTimeout(deps)} ms; retrying with backoff`);
    }
    // Committed. A send started but not claimed (already spent) must not go.
    if (step.flight) await withdraw(step.flight);
    for (const w of step.written) {
      result[w.status] += 1;
      run.metrics.decision(w.status, w.reason);
      w.log();
    }
    if (step.claimed) deferred = (await finishSend(run, step.claimed)) ?? deferred;
    if (step.deferred) {
      deferred = step.deferred;
      run.metrics.deferred();
    }
    more = step.more;
  }
  // Only the code goes into the job's error (kept in Redis, logged): the server's text may name
  // the recipient.
  if (deferred) throw new DeferredError(`SMTP deferred the send (${deferred}); retrying with backoff`);
  return result;
}

/**
 * One transaction: lock and load, decide, record the suppressions not yet recorded, then take the
 * first send not yet done as far as its handover.
 */
async function decideAndHandOver(run: Run, trx: Db, step: Step): Promise<void> {
  const { deps, job, now } = run;
  const snapshot = await lockAndLoadSnapshot(trx, job.opportunityId, snapshotNeeds(run.journey, now));
  const actions = decideJob(snapshot, run.journey, job, now).filter((a) => !run.done.has(actionKey(a)));
  for (const action of actions) {
    if (action.kind === 'send') continue;
    run.done.add(actionKey(action));
    if (action.kind === 'skip') {
      run.result.skipped += 1;
      deps.logger.debug({ ...logFields(job, action), why: action.why }, 'skipped');
    } else if (await recordSuppression(run, trx, action)) {
      const fields = { ...logFields(job, action), reason: action.reason };
      step.written.push({ status: 'suppressed', reason: action.reason, log: () => deps.logger.info(fields, 'suppressed') });
    }
  }
  const sends = actions.filter((a): a is Extract<JobAction, { kind: 'send' }> => a.kind === 'send');
  for (const [i, action] of sends.entries()) {
    run.done.add(actionKey(action));
    const prepared = await prepare(run, trx, snapshot!, action, step);
    if (!prepared) continue;
    step.more = i + 1 < sends.length;
    await handOver(run, trx, prepared, step);
    return;
  }
}

interface Prepared {
  email: OutgoingEmail;
  row: ClaimRow;
  log: Record<string, unknown>;
}

/** Renders the email; a template that cannot render is recorded (it spends nothing) and yields null. */
async function prepare(run: Run, trx: Db, snapshot: Snapshot, action: Extract<JobAction, { kind: 'send' }>, step: Step): Promise<Prepared | null> {
  const { deps, job } = run;
  const { evaluation, recipient } = action;
  const log = logFields(job, action);
  const base = {
    opportunity_id: job.opportunityId, step_id: evaluation.step.id, contact_id: recipient.contact?.id ?? null,
    recipient: recipient.address, due_at: evaluation.due?.dueAt ?? null, decided_at: run.now,
    closing_date: evaluation.closingDate, occurrence: evaluation.occurrence,
  };
  try {
    const rendered = deps.templates().render(evaluation.step.template, templateContext(snapshot, recipient, deps.compose),
      { locale: recipient.locale, timeZone: recipient.timeZone });
    const email = composeEmail(rendered, snapshot, evaluation.step, recipient, evaluation.occurrence, deps.compose);
    return { email, row: { ...base, message_id: email.messageId, template: rendered.file, transport: deps.mailer.transport }, log };
  } catch (caught) {
    if (!(caught instanceof TemplateError)) throw caught;
    const error: TemplateError = caught;
    // Recorded, but it spends nothing: once the template is fixed the step fires in its window.
    const fields = { ...log, reason: 'template_error', problem: error.message };
    await recordFailure(trx, step, { ...base, status: 'failed', reason: 'template_error', detail: error.message.slice(0, 500), template: evaluation.step.template },
      () => deps.logger.error(fields, 'failed'));
    return null;
  }
}

/**
 * Starts the send and waits, the rows still locked, until only the message's final dot is left to
 * write (then claims it; the gate opens as the claim's COMMIT goes out), or the send ends before
 * that, or the time runs out (HandoverTimeout: the transaction rolls back).
 */
async function handOver(run: Run, trx: Db, prepared: Prepared, step: Step): Promise<void> {
  const { flight, handover } = startSend(run.deps.mailer, prepared.email, handoverTimeout(run.deps));
  step.flight = flight;
  const reached = await handover;
  if (reached.kind === 'timeout') throw new HandoverTimeout();
  // `accepted` or `unknown` before the gate comes only from a mailer that never asks it: the
  // message went anyway, so it is claimed and recorded like any other.
  if (reached.kind === 'gate' || reached.outcome.kind === 'accepted' || reached.outcome.kind === 'unknown') {
    const id = await claimSend(trx, prepared.row);
    if (id !== null) {
      const claimed: Claimed = { id, flight, row: prepared.row, dueAt: prepared.row.due_at ?? null, log: prepared.log, opened: false, kept: false };
      step.claimed = claimed;
      step.flight = null;
      // The final dot follows the claim's COMMIT with nothing in between: a worker killed at any
      // moment leaves either no claim and no complete message, or both (a claim it could not
      // finish is `unknown`), save for the instant between the two writes.
      await armCommit(trx, () => {
        claimed.opened = true;
        flight.answer(true);
      });
      return;
    }
    // Spent meanwhile: a duplicate job claimed it first (owner steps take no contact lock). The
    // gate says no once this transaction has ended.
    run.result.skipped += 1;
    run.deps.logger.info(prepared.log, 'already spent for this recipient; not sent again');
    return;
  }
  step.flight = null;
  const outcome = reached.outcome;
  if (outcome.kind === 'rejected') {
    // A permanent refusal of the envelope spends the step, once: written in this transaction.
    const fields = { ...prepared.log, reason: 'smtp_rejected', code: outcome.code };
    await recordFailure(trx, step, { ...prepared.row, status: 'failed', reason: 'smtp_rejected', detail: outcome.response.slice(0, 500) },
      () => run.deps.logger.warn(fields, 'failed'));
    return;
  }
  // Deferred (4xx, refused, timeout): nothing written; the job retries.
  step.deferred = logDeferral(run.deps, prepared.log, outcome);
}

/**
 * Records a failure (`template_error`, `smtp_rejected`) in the step's transaction; `log` says so
 * once it committed. One an earlier try recorded is logged at once: what failed, failed again
 * (the template is still broken, the server refused once more).
 */
async function recordFailure(trx: Db, step: Step, row: NewDelivery & { reason: FailureReason }, log: () => void): Promise<void> {
  if (await recordDecision(trx, row)) step.written.push({ status: 'failed', reason: row.reason, log });
  else log();
}

async function recordSuppression(run: Run, trx: Db, action: Extract<JobAction, { kind: 'suppress' }>): Promise<boolean> {
  const { job } = run;
  const row: NewDelivery = {
    opportunity_id: job.opportunityId, step_id: job.stepId, contact_id: action.recipient?.contact?.id ?? null,
    recipient: action.recipient?.address ?? '', status: 'suppressed', reason: action.reason, due_at: action.dueAt,
    decided_at: run.now, closing_date: action.closingDate, occurrence: action.occurrence, detail: action.detail,
  };
  return recordDecision(trx, row);
}

/** Whom an action is about, to deal with each recipient of a job once. */
function recipientKey(contactId: number | null | undefined, address: string | undefined): string {
  return `${contactId ?? '-'}:${address ?? ''}`;
}

function actionKey(action: JobAction): string {
  return recipientKey(action.recipient?.contact?.id, action.recipient?.address);
}

function logFields(job: DeliverJob, action: JobAction): Record<string, unknown> {
  return { opportunityId: job.opportunityId, stepId: job.stepId, contactId: action.recipient?.contact?.id ?? null };
}

function handoverTimeout(deps: DeliverDeps): number {
  return deps.handoverTimeoutMs ?? DEFAULT_HANDOVER_TIMEOUT_MS;
}
