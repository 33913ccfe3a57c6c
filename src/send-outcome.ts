/**
 * After a send's claim committed (`deliver`): let the message go, and record how SMTP answered;
 * after a claim whose COMMIT went unanswered while the message may have been completed: record
 * the claim again first. Each of these writes alone says what happened to an email, so each is
 * tried again while PostgreSQL cannot be reached (`persisting`).
 *
 * While it is not recorded, such a send is also kept in the job's own data in Redis
 * (`UnrecordedSends`): whoever runs the job next (its retry once this attempt gave up, or another
 * worker once this one died or its lock lapsed) records it from there instead of sending it again.
 */
import { mayPassOnRetry } from './db/database.ts';
import { markRejected, markSent, markUnknown, newDeliveryId, ownClaim, reclaimSend, releaseClaim, type ClaimRow } from './db/deliveries.ts';
import type { DeliverDeps, DeliverResult } from './deliver.ts';
import type { SendOutcome } from './email/mailer.ts';
import type { Logger } from './logger.ts';
import type { Metrics } from './metrics.ts';
import { deliverJobId, type DeliverJob } from './queue/queues.ts';
import { seal, SealError, unsealWithAny } from './seal.ts';
import type { Secrets } from './secrets.ts';
import type { InFlight } from './send-gate.ts';

/** What recording a send needs of the job being delivered. */
export interface OutcomeRun {
  deps: Pick<DeliverDeps, 'db' | 'logger' | 'mailer' | 'repeats'>;
  metrics: Metrics;
  now: Date;
  result: DeliverResult;
  unrecorded: UnrecordedSends;
}

/**
 * A send whose message may have been completed while PostgreSQL did not take its claim or its
 * outcome (read back from the job's data, the row's instants are strings).
 */
export interface UnrecordedSend {
  /** The id the claim's INSERT returned: the claim's row, if that INSERT committed after all. */
  claimId: number;
  row: ClaimRow;
  outcome: SendOutcome;
}

/**
 * An unrecorded send as the job's data holds it: the claim's id, and its row and outcome sealed
 * under NUDGE_SECRET (`src/seal.ts`), since they name the recipient and a queue payload carries
 * ids only. Bound to the job (its id) and the claim's id.
 */
export interface KeptSend {
  claimId: number;
  sealed: string;
}

const SEAL_PURPOSE = 'kept-send';

function sealBound(job: DeliverJob, claimId: number): string {
  return `${deliverJobId(job)}/${claimId}`;
}

/** An unrecorded send sealed for the job's data. */
export function keepSend(secret: string, job: DeliverJob, send: UnrecordedSend): KeptSend {
  return { claimId: send.claimId, sealed: seal(secret, SEAL_PURPOSE, sealBound(job, send.claimId), { row: send.row, outcome: send.outcome }) };
}

/**
 * The unrecorded sends of a job's data, opened. A SealError (another NUDGE_SECRET, an altered
 * payload) is thrown: the job fails rather than send what may have been sent, and is kept, not
 * dropped, once its attempts are spent (`workers/deliver-worker.ts`).
 */
export function keptSends(secrets: Secrets, job: DeliverJob): UnrecordedSend[] {
  return (job.unrecorded ?? []).map((kept) => {
    try {
      const { row, outcome } = unsealWithAny(secrets, SEAL_PURPOSE, sealBound(job, kept.claimId), kept.sealed) as Omit<UnrecordedSend, 'claimId'>;
      return { claimId: kept.claimId, row, outcome };
    } catch (error) {
      if (!(error instanceof SealError)) throw error;
      throw new SealError(`the send an earlier attempt of this job kept (claim ${kept.claimId}) ${error.message}: `
        + 'every worker must share one NUDGE_SECRET (a secret rotated away goes in NUDGE_SECRET_PREVIOUS); the job is not sent until it can be read');
    }
  });
}

/** Replaces the job's data in Redis (BullMQ's `job.updateData`). */
export type KeepJobData = (data: DeliverJob) => Promise<void>;

/** Kept until the real outcome is known: a send cut off after its final dot is `unknown`, never resent. */
const NOT_YET_KNOWN: SendOutcome = { kind: 'unknown', reason: 'the message was completed while its claim was being recorded; how the server answered was not recorded' };

/**
 * The job's unrecorded sends, one per recipient, written to the job's data at each change. The
 * writes go out in order and nothing waits for them but `written`: a PostgreSQL write never waits
 * for Redis (unreachable, its commands would wait for it). Without `keep` (a caller with no queue)
 * they are only held in memory.
 */
export class UnrecordedSends {
  #sends: UnrecordedSend[];
  #writes: Promise<void> = Promise.resolve();

  /**
   * Throws a SealError when the job's kept sends open with neither the secret nor a previous one
   * (`keptSends`). Whatever it keeps again is sealed under the current secret.
   */
  constructor(private readonly job: DeliverJob, private readonly secrets: Secrets, private readonly logger: Logger, private readonly keep?: KeepJobData) {
    this.#sends = keptSends(secrets, job);
  }

  /** What an earlier attempt of the job left to record. */
  get left(): readonly UnrecordedSend[] {
    return this.#sends;
  }

  /** Keeps a send in the job's data, in place of any earlier one to the same recipient. */
  hold(send: UnrecordedSend): void {
    this.#sends = [...this.#sends.filter((s) => !sameRecipient(s.row, send.row)), send];
    this.save();
  }

  /** The send to this recipient is recorded: out of the job's data. */
  forget(row: ClaimRow): void {
    if (!this.#sends.some((s) => sameRecipient(s.row, row))) return;
    this.#sends = this.#sends.filter((s) => !sameRecipient(s.row, row));
    this.save();
  }

  /** The writes made so far have landed (or failed, logged): the job may end. */
  written(): Promise<void> {
    return this.#writes;
  }

  private save(): void {
    const keep = this.keep;
    if (!keep) return;
    const { unrecorded: _, ...request } = this.job;
    const data: DeliverJob = this.#sends.length > 0
      ? { ...request, unrecorded: this.#sends.map((send) => keepSend(this.secrets.secret, request, send)) }
      : request;
    this.#writes = this.#writes.then(() => keep(data).catch((error: Error) => {
      // Redis refused (or the job is gone): PostgreSQL's retries are all that is left.
      this.logger.error({ opportunityId: this.job.opportunityId, stepId: this.job.stepId, err: error.message },
        'could not keep the unrecorded send in the job; if it cannot be recorded either, a retry may send it again');
    }));
  }
}

function sameRecipient(a: ClaimRow, b: ClaimRow): boolean {
  return a.contact_id === b.contact_id && a.recipient === b.recipient;
}

/**
 * Records a send an earlier attempt of this job completed but could not record (its claim, or how
 * SMTP answered): the claim is found or written again, then the outcome, and nothing is sent.
 * Returns false for a deferral: nothing was accepted, so its claim (if it is there) is released,
 * and the job's send goes again, as after any deferral.
 */
export async function recordLeftOver(run: OutcomeRun, send: UnrecordedSend): Promise<boolean> {
  const row: ClaimRow = { ...send.row, due_at: send.row.due_at === null ? null : new Date(send.row.due_at), decided_at: new Date(send.row.decided_at) };
  const log = { opportunityId: row.opportunity_id, stepId: row.step_id, contactId: row.contact_id };
  const { outcome } = send;
  run.deps.logger.warn({ ...log, outcome: outcome.kind }, 'recording a send an earlier attempt completed but could not record; not sending it again');
  const found = await persisting(run, log, 'could not read the send an earlier attempt kept; the job tries again later',
    () => ownClaim(run.deps.db, row));
  if (outcome.kind === 'deferred' || outcome.kind === 'withdrawn') {
    if (found?.status === 'unknown') {
      await persisting(run, log, 'could not release the claim of a deferred send; the job tries again later', () => releaseClaim(run.deps.db, found.id));
      run.metrics.deferred();
    }
    run.unrecorded.forget(row);
    return false;
  }
  // Recorded after all: the attempt that kept it got through before it could take it out.
  const recorded = found !== null && (found.status !== 'unknown' || (outcome.kind === 'unknown' && found.detail === outcome.reason.slice(0, 500)));
  if (recorded) {
    run.unrecorded.forget(row);
    return true;
  }
  const claimed: Claimed = { id: found?.id ?? send.claimId, flight: settledFlight(outcome), row, dueAt: row.due_at, log, opened: true, kept: true };
  const id = found === null ? await recordClaim(run, claimed) : found.id;
  // Its latency is the send's own: as of the attempt that made it.
  if (id !== null) await finishSend({ ...run, now: row.decided_at }, { ...claimed, id });
  return true;
}

function settledFlight(outcome: SendOutcome): InFlight {
  return { answer: () => {}, outcome: Promise.resolve(outcome) };
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
  /** The send is kept in the job's data (its claim was lost): its outcome goes there too. */
  kept: boolean;
}

/**
 * The gate opened as the claim's COMMIT was written, and the commit failed or its answer was lost
 * with the connection: the message may have been completed with no claim committed. Record the
 * claim now, outside the transaction (or find it, if it did commit), then the outcome, as for any
 * claim; while PostgreSQL cannot be reached, try again for about a minute. Only then is the send
 * left to the job's next attempt, which records it from the job's data (it finds no claim).
 */
export async function claimAfterFailedCommit(run: OutcomeRun, claimed: Claimed, error: unknown): Promise<void> {
  run.deps.logger.error({ ...claimed.log, err: (error as Error).message }, 'the claim may not have committed while the message was completed; recording it again');
  // Kept in the job at once: if this worker dies, or its lock lapses, before the claim is
  // recorded, whoever runs the job next records it instead of sending again.
  run.unrecorded.hold({ claimId: claimed.id, row: claimed.row, outcome: NOT_YET_KNOWN });
  const kept = { ...claimed, kept: true };
  const id = await recordClaim(run, kept);
  if (id !== null) await finishSend(run, { ...kept, id });
}

/**
 * Finds the claim (ours if it committed after all, or was written again since: `ownClaim`) or
 * writes it again under a new id (`newDeliveryId`). Another attempt's claim of the same send
 * (another worker's, still in flight) is never adopted. Returns null when such a claim spent the
 * step meanwhile: nothing of ours to record.
 */
async function recordClaim(run: OutcomeRun, claimed: Claimed): Promise<number | null> {
  const { deps } = run;
  const ours = async () => (await ownClaim(deps.db, claimed.row))?.id ?? null;
  let id = claimed.id;
  let recorded: number | null;
  try {
    // A write whose answer was lost, or the lost COMMIT itself come through late, is found by the
    // next look.
    recorded = await persisting(run, claimed.log, 'could not record a completed send; it is kept in the job, whose retry records it', async () => {
      const found = await ours();
      if (found !== null) return found;
      id = await newDeliveryId(deps.db);
      return (await reclaimSend(deps.db, id, claimed.row)) ?? ours();
    });
  } catch (failure) {
    run.unrecorded.hold({ claimId: id, row: claimed.row, outcome: await claimed.flight.outcome });
    throw failure;
  }
  if (recorded === null) {
    deps.logger.error(claimed.log, 'the step was spent by another worker while this send\'s claim was lost; the send is not recorded');
    await withdraw(claimed.flight);
    run.unrecorded.forget(claimed.row);
  }
  return recorded;
}

/**
 * Runs a write that alone records what happened to an email (its claim, how SMTP answered); while
 * PostgreSQL cannot be reached (connections cut, a restart), tries again for about a minute with
 * a fresh connection each time, logging each try. Only then, or at once for an error that a retry
 * cannot mend (`mayPassOnRetry`), does it give up, logging `lastWords`, and throw. `meanwhile`
 * runs at the first failure, and again on giving up.
 */
async function persisting<T>(run: OutcomeRun, log: Record<string, unknown>, lastWords: string, write: () => Promise<T>,
  meanwhile: () => void = () => {}): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await write();
    } catch (failure) {
      const err = (failure as Error).message;
      if (attempt === 1) meanwhile();
      if (attempt >= RECORD_ATTEMPTS || !mayPassOnRetry(failure)) {
        // Again (each write holds the whole state): the first one may have failed as well.
        if (attempt > 1) meanwhile();
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
  // In the job's data while it is not recorded: from now on if the send is kept there already,
  // from the first failed write if not (a worker stopped or killed meanwhile leaves it there).
  const hold = () => run.unrecorded.hold({ claimId: claimed.id, row: claimed.row, outcome });
  if (claimed.kept) hold();
  const record = async (write: () => Promise<void>) => {
    await persisting(run, claimed.log, `could not record how SMTP answered (${outcome.kind}); it is kept in the job, whose retry records it`, write, hold);
    run.unrecorded.forget(claimed.row);
  };
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
    case 'withdrawn': {
      // Nothing was accepted (a 4xx to the message itself): the claim goes and the job retries.
      await record(() => releaseClaim(deps.db, claimed.id));
      metrics.deferred();
      return logDeferral(deps, claimed.log, outcome);
    }
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

/**
 * Logs a deferral and returns its reply code. Where the whole server is out of service, or refuses
 * Nudge itself, every send is deferred at each attempt, so the process says it once a minute
 * (`repeats`), with the first send's ids:
 * - a server that could not be reached (no reply), per error: the error's code (ECONNECTION,
 *   ETIMEDOUT, ESOCKET, …) and its text (a refused port, a certificate that cannot be verified),
 *   which names no recipient: none was named yet;
 * - a 421 (RFC 5321: the service is not available, the channel closing), whatever text comes with it;
 * - a 5xx that refuses Nudge itself (`refusedAt`: a wrong password, a sender refused, relaying
 *   refused), at error level, with the server's text: the operator must fix the configuration.
 * Any other deferral (450, 451, 452: this mailbox, this message) is a line each, with its ids, as
 * an MTA logs it. Addresses in a server's or an error's text are left out (`<address>`).
 */
export function logDeferral(deps: Pick<DeliverDeps, 'logger' | 'repeats'>, log: Record<string, unknown>,
  outcome: Extract<SendOutcome, { kind: 'deferred' | 'withdrawn' }>): string {
  const code = replyCode(outcome);
  const refusedAt = outcome.kind === 'deferred' ? outcome.refusedAt : undefined;
  if (refusedAt !== undefined) {
    // `err` (the code and the command) keeps a refused login and a refused sender apart in the minute.
    const fields = { ...log, code, command: refusedAt, err: `${code} ${refusedAt}`, response: withoutAddresses(outcome.reason).slice(0, 300) };
    const msg = 'smtp refuses Nudge itself (its connection, login, sender or relaying), not an email; sends deferred, BullMQ retries each with backoff: check SMTP_URL and MAIL_FROM';
    if (deps.repeats) deps.repeats('error', msg, fields);
    else deps.logger.error(fields, msg);
  } else if (code === 'connection' && deps.repeats) {
    const error = /^([A-Z][A-Z_]+): (.*)$/s.exec(outcome.reason);
    deps.repeats('warn', 'smtp cannot be reached; sends deferred, BullMQ retries each with backoff',
      { ...log, code, err: error?.[1] ?? 'error', detail: withoutAddresses(error?.[2] ?? outcome.reason).slice(0, 300) });
  } else if (code === '421' && deps.repeats) {
    deps.repeats('warn', 'smtp service not available (421); sends deferred, BullMQ retries each with backoff', { ...log, code });
  } else {
    deps.logger.warn({ ...log, code }, 'smtp deferred the send; will retry');
  }
  return code;
}

/** `text` with every e-mail address in it replaced by `<address>`: for a log line. */
function withoutAddresses(text: string): string {
  return text.replace(/[^\s<>()[\]"',;:]+@[^\s<>()[\]"',;:]+/g, '<address>');
}

/** The SMTP reply code of a deferral, for the job's error: never the server's text. */
function replyCode(outcome: Extract<SendOutcome, { kind: 'deferred' | 'withdrawn' }>): string {
  return outcome.kind === 'withdrawn' ? 'withdrawn' : (/^\d{3}/.exec(outcome.reason)?.[0] ?? 'connection');
}
