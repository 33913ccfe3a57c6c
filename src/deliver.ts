/**
 * One delivery job: reload the opportunity, decide again at `now`, then suppress (a row) or
 * render, claim the send in PostgreSQL, hand it to SMTP and record the outcome.
 *
 * Order matters for "exactly once in effect": the claim (a `deliveries` row with status
 * `unknown`, under the unique index `deliveries_spent`) commits before SMTP sees the message. A
 * process that dies after the server accepted and before the final write leaves `unknown`,
 * never a second email; a duplicate job finds the claim and sends nothing.
 */
import type { Db } from './db/database.ts';
import {
  claimSend, markHandedOver, markRejected, markSent, markUnknown, recordDecision, releaseClaim, type NewDelivery,
} from './db/deliveries.ts';
import { loadSnapshot } from './db/snapshots.ts';
import { composeEmail, templateContext, type ComposeSettings } from './email/compose.ts';
import type { Mailer, OutgoingEmail } from './email/mailer.ts';
import { TemplateError, type Templates } from './email/templates.ts';
import { decideJob, type JobAction } from './journey/decide-job.ts';
import type { Journey, Snapshot } from './journey/types.ts';
import type { Logger } from './logger.ts';
import { noMetrics, type Metrics } from './metrics.ts';
import type { DeliverJob } from './queue/queues.ts';
import { snapshotNeeds } from './scan.ts';

export interface DeliverDeps {
  db: Db;
  mailer: Mailer;
  /** The last good templates and journey (a bad edit keeps the previous version). */
  templates(): Templates;
  journey(): Journey;
  compose: ComposeSettings;
  logger: Logger;
  metrics?: Metrics;
}

export interface DeliverResult {
  sent: number;
  suppressed: number;
  failed: number;
  unknown: number;
  skipped: number;
}

/** Thrown when SMTP deferred a send: the job is retried with backoff (the claim was released). */
export class DeferredError extends Error {
  override name = 'DeferredError';
}

interface Claimed {
  id: number;
  email: OutgoingEmail;
  dueAt: Date | null;
  /** The normalised address the claim was made for. */
  recipient: string;
  log: Record<string, unknown>;
}

export async function deliver(deps: DeliverDeps, job: DeliverJob, now: Date): Promise<DeliverResult> {
  const result: DeliverResult = { sent: 0, suppressed: 0, failed: 0, unknown: 0, skipped: 0 };
  const journey = deps.journey();
  const claimed = await deps.db.transaction().execute(async (trx) => {
    const snapshot = await loadSnapshot(trx, job.opportunityId, snapshotNeeds(journey, now), true);
    const actions = decideJob(snapshot, journey, job, now);
    const out: Claimed[] = [];
    for (const action of actions) {
      const claim = await apply(deps, trx, snapshot, job, action, now, result);
      if (claim) out.push(claim);
    }
    return out;
  });
  const metrics = deps.metrics ?? noMetrics;
  let deferred: string | null = null;
  for (const c of claimed) {
    const outcome = await deps.mailer.send(c.email, { beforeHandover: () => recheck(deps, journey, job, c, now, result) });
    switch (outcome.kind) {
      case 'withdrawn':
        deps.logger.info({ ...c.log }, 'withdrawn at handover: the rows changed since the decision');
        break;
      case 'accepted':
        await markSent(deps.db, c.id, outcome.response.slice(0, 500));
        result.sent += 1;
        metrics.decision('sent', null);
        if (c.dueAt) metrics.dueToSent((now.getTime() - c.dueAt.getTime()) / 1000);
        deps.logger.info({ ...c.log, transport: deps.mailer.transport }, 'sent');
        break;
      case 'rejected':
        await markRejected(deps.db, c.id, outcome.response.slice(0, 500));
        result.failed += 1;
        metrics.decision('failed', 'smtp_rejected');
        deps.logger.warn({ ...c.log, reason: 'smtp_rejected', code: outcome.code }, 'failed');
        break;
      case 'deferred':
        await releaseClaim(deps.db, c.id);
        // Only the code goes into the job's error (kept in Redis, logged): the server's text
        // may name the recipient.
        deferred = /^\d{3}/.exec(outcome.reason)?.[0] ?? 'connection';
        metrics.deferred();
        deps.logger.warn({ ...c.log }, 'smtp deferred the send; will retry');
        break;
      case 'unknown':
        await markUnknown(deps.db, c.id, outcome.reason.slice(0, 500));
        result.unknown += 1;
        metrics.decision('unknown', null);
        deps.logger.error({ ...c.log }, 'send outcome unknown: connection lost after the message was handed over; not resent');
        break;
    }
  }
  if (deferred) throw new DeferredError(`SMTP deferred the send (${deferred}); retrying with backoff`);
  return result;
}

/**
 * At handover, just before the message's first byte goes to SMTP: lock the rows again, decide
 * again (leaving the claim itself out), and hand over only if the same send still stands. A
 * change committed while the connection was being set up (unsubscribed, moved date, won) is
 * honoured: the claim goes, and the suppression is recorded.
 */
async function recheck(deps: DeliverDeps, journey: Journey, job: DeliverJob, claim: Claimed, now: Date, result: DeliverResult): Promise<boolean> {
  return deps.db.transaction().execute(async (trx) => {
    const needs = { ...snapshotNeeds(journey, now), excludeDelivery: claim.id };
    const snapshot = await loadSnapshot(trx, job.opportunityId, needs, true);
    const actions = decideJob(snapshot, journey, job, now);
    const mine = actions.find((a) => (a.recipient?.address ?? '') === claim.recipient) ?? actions[0];
    if (mine?.kind === 'send' && mine.recipient.address === claim.recipient) return markHandedOver(trx, claim.id);
    await releaseClaim(trx, claim.id);
    if (mine?.kind === 'suppress') await recordSuppression(deps, trx, job, mine, now, result);
    else result.skipped += 1;
    return false;
  });
}

async function apply(
  deps: DeliverDeps, trx: Db, snapshot: Snapshot | null, job: DeliverJob, action: JobAction, now: Date, result: DeliverResult,
): Promise<Claimed | null> {
  const log = { opportunityId: job.opportunityId, stepId: job.stepId, contactId: action.recipient?.contact?.id ?? null };
  if (action.kind === 'skip') {
    result.skipped += 1;
    deps.logger.debug({ ...log, why: action.why }, 'skipped');
    return null;
  }
  if (action.kind === 'suppress') {
    await recordSuppression(deps, trx, job, action, now, result);
    return null;
  }
  const { evaluation, recipient } = action;
  const s = snapshot!;
  const base = {
    opportunity_id: job.opportunityId, step_id: evaluation.step.id, contact_id: recipient.contact?.id ?? null,
    recipient: recipient.address, due_at: evaluation.due?.dueAt ?? null, decided_at: now,
    closing_date: evaluation.closingDate, occurrence: evaluation.occurrence,
  };
  let email: OutgoingEmail;
  let file: string;
  try {
    const rendered = deps.templates().render(evaluation.step.template, templateContext(s, recipient, deps.compose),
      { locale: recipient.locale, timeZone: recipient.timeZone });
    email = composeEmail(rendered, s, evaluation.step, recipient, evaluation.occurrence, deps.compose);
    file = rendered.file;
  } catch (caught) {
    if (!(caught instanceof TemplateError)) throw caught;
    const error: TemplateError = caught;
    // Recorded, but it spends nothing: once the template is fixed the step fires in its window.
    if (await recordDecision(trx, { ...base, status: 'failed', reason: 'template_error', detail: error.message.slice(0, 500), template: evaluation.step.template })) {
      result.failed += 1;
      (deps.metrics ?? noMetrics).decision('failed', 'template_error');
    }
    deps.logger.error({ ...log, reason: 'template_error', problem: error.message }, 'failed');
    return null;
  }
  const id = await claimSend(trx, { ...base, message_id: email.messageId, template: file, transport: deps.mailer.transport });
  if (id === null) {
    result.skipped += 1;
    deps.logger.info(log, 'already spent for this recipient; not sent again');
    return null;
  }
  return { id, email, dueAt: base.due_at, recipient: recipient.address, log };
}

async function recordSuppression(
  deps: DeliverDeps, trx: Db, job: DeliverJob, action: Extract<JobAction, { kind: 'suppress' }>, now: Date, result: DeliverResult,
): Promise<void> {
  const row: NewDelivery = {
    opportunity_id: job.opportunityId, step_id: job.stepId, contact_id: action.recipient?.contact?.id ?? null,
    recipient: action.recipient?.address ?? '', status: 'suppressed', reason: action.reason, due_at: action.dueAt,
    decided_at: now, closing_date: action.closingDate, occurrence: action.occurrence, detail: action.detail,
  };
  if (await recordDecision(trx, row)) {
    result.suppressed += 1;
    (deps.metrics ?? noMetrics).decision('suppressed', action.reason);
  }
  deps.logger.info({ opportunityId: job.opportunityId, stepId: job.stepId, contactId: row.contact_id, reason: action.reason }, 'suppressed');
}
