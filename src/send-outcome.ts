/**
 * After a send's claim committed (`deliver`): let the message go, and record how SMTP answered;
 * after a claim whose COMMIT went unanswered while the message may have been completed: record
 * the claim again first. Each of these writes alone says what happened to an email, so each is
 * tried again while PostgreSQL cannot be reached (`persisting`).
 */
import { mayPassOnRetry } from './db/database.ts';
import { claimCommitted, claimSend, markRejected, markSent, markUnknown, releaseClaim, type ClaimRow } from './db/deliveries.ts';
import type { DeliverDeps, DeliverResult } from './deliver.ts';
import type { SendOutcome } from './email/mailer.ts';
import type { Metrics } from './metrics.ts';
import type { InFlight } from './send-gate.ts';

/** What recording a send needs of the job being delivered. */
export interface OutcomeRun {
  deps: Pick<DeliverDeps, 'db' | 'logger' | 'mailer'>;
  metrics: Metrics;
  now: Date;
  result: DeliverResult;
}

/** A send claimed in a transaction: its row's id, the send held at its gate, and what to log. */
export interface Claimed {
  id: number;
  flight: InFlight;
  row: ClaimRow;
  dueAt: Date | null;
  log: Record<string, unknown>;
  /** The gate was opened as the claim's COMMIT went out: the message may be complete. */
  opened: boolean;
}

/**
 * The gate opened as the claim's COMMIT was written, and the commit failed or its answer was lost
 * with the connection: the message may have been completed with no claim committed. Record the
 * claim now, outside the transaction (or find it, if it did commit), then the outcome, as for any
 * claim; while PostgreSQL cannot be reached, try again for about a minute (the job's retry would
 * otherwise find no claim and send again). Only then is the send left unrecorded, and logged.
 */
export async function claimAfterFailedCommit(run: OutcomeRun, claimed: Claimed, error: unknown): Promise<void> {
  const { deps } = run;
  deps.logger.error({ ...claimed.log, err: (error as Error).message }, 'the claim may not have committed while the message was completed; recording it again');
  // Ours if it committed after all (found by the id the INSERT returned); else inserted now. A row
  // found any other way could be another worker's claim, still in flight: never adopted.
  const id = await persisting(run, claimed.log, 'could not record a completed send; the step may be sent again',
    async () => ((await claimCommitted(deps.db, claimed.id)) ? claimed.id : claimSend(deps.db, claimed.row)));
  if (id === null) {
    // Spent by another row meanwhile (another worker's claim or decision): nothing of ours to record.
    deps.logger.error(claimed.log, 'the step was spent by another worker while this send\'s claim was lost; the send is not recorded');
    await withdraw(claimed.flight);
    return;
  }
  await finishSend(run, { ...claimed, id });
}

/**
 * Runs a write that alone records what happened to an email (its claim, how SMTP answered); while
 * PostgreSQL cannot be reached (connections cut, a restart), tries again for about a minute with
 * a fresh connection each time, logging each try. Only then, or at once for an error that a retry
 * cannot mend (`mayPassOnRetry`), does it give up, logging `lastWords`, and throw.
 */
async function persisting<T>(run: OutcomeRun, log: Record<string, unknown>, lastWords: string, write: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await write();
    } catch (failure) {
      const err = (failure as Error).message;
      if (attempt >= RECORD_ATTEMPTS || !mayPassOnRetry(failure)) {
        run.deps.logger.error({ ...log, err }, lastWords);
        throw failure;
      }
      run.deps.logger.warn({ ...log, attempt, err }, 'could not record the send yet (PostgreSQL unreachable or refusing for now); trying again');
      await new Promise((resolve) => setTimeout(resolve, Math.min(250 * 2 ** (attempt - 1), 16_000)));
    }
  }
}

/** Attempts of a write that records an email: waits of 0.25 s doubling to 16 s, about a minute in all. */
const RECORD_ATTEMPTS = 9;

/**
 * After the claim committed: let the message go, and record how SMTP answered (tried again while
 * PostgreSQL cannot be reached: an accepted email left `unknown`, or a deferred one left claimed,
 * would be counted wrong or never sent). Returns a deferral's code.
 */
export async function finishSend(run: OutcomeRun, claimed: Claimed): Promise<string | null> {
  const { deps, metrics, result } = run;
  claimed.flight.answer(true);
  const outcome = await claimed.flight.outcome;
  const record = (write: () => Promise<void>) => persisting(run, claimed.log,
    `could not record how SMTP answered (${outcome.kind}); the send stays unknown`, write);
  switch (outcome.kind) {
    case 'accepted':
      await record(() => markSent(deps.db, claimed.id, outcome.response.slice(0, 500)));
      result.sent += 1;
      metrics.decision('sent', null);
      if (claimed.dueAt) metrics.dueToSent((run.now.getTime() - claimed.dueAt.getTime()) / 1000);
      deps.logger.info({ ...claimed.log, transport: deps.mailer.transport }, 'sent');
      return null;
    case 'rejected':
      await record(() => markRejected(deps.db, claimed.id, outcome.response.slice(0, 500)));
      result.failed += 1;
      metrics.decision('failed', 'smtp_rejected');
      deps.logger.warn({ ...claimed.log, reason: 'smtp_rejected', code: outcome.code }, 'failed');
      return null;
    case 'deferred':
    case 'withdrawn':
      // Nothing was accepted (a 4xx to the message itself): the claim goes and the job retries.
      await record(() => releaseClaim(deps.db, claimed.id));
      metrics.deferred();
      deps.logger.warn(claimed.log, 'smtp deferred the send; will retry');
      return replyCode(outcome);
    case 'unknown':
      await record(() => markUnknown(deps.db, claimed.id, outcome.reason.slice(0, 500)));
      result.unknown += 1;
      metrics.decision('unknown', null);
      deps.logger.error(claimed.log, 'send outcome unknown: connection lost after the message was handed over; not resent');
      return null;
  }
}

/** Answers the gate no (if it is ever reached) and waits for the send to end. */
export async function withdraw(flight: InFlight): Promise<void> {
  flight.answer(false);
  await flight.outcome;
}

/** The SMTP reply code of a deferral, for the job's error: never the server's text. */
export function replyCode(outcome: Extract<SendOutcome, { kind: 'deferred' | 'withdrawn' }>): string {
  return outcome.kind === 'withdrawn' ? 'withdrawn' : (/^\d{3}/.exec(outcome.reason)?.[0] ?? 'connection');
}
