/**
 * The worker's re-check: a job was computed by a scan from the rows of that moment; at send time
 * the rows are loaded again and `evaluate` decides again. What changed in between wins.
 */
import { evaluate, type StepEvaluation } from './decide.ts';
import type { Recipient } from './recipients.ts';
import type { DecisionSnapshot, IsoDate, Journey, Step, SuppressionReason } from './types.ts';

/** What a job asks for: ids only, no personal data. */
export interface DeliveryRequest {
  opportunityId: number;
  stepId: string;
  /** The closing date the scan computed the step from. */
  closingDate: IsoDate | null;
  occurrence: string;
}

export type JobAction =
  | { kind: 'send'; evaluation: StepEvaluation; recipient: Recipient }
  | { kind: 'suppress'; reason: SuppressionReason; detail: string; recipient: Recipient | null;
      closingDate: IsoDate | null; occurrence: string; dueAt: Date | null }
  /** Nothing to do now (already spent, not due yet, step gone): no row. */
  | { kind: 'skip'; why: string; recipient: Recipient | null };

export function decideJob(snapshot: DecisionSnapshot | null, journey: Journey, job: DeliveryRequest, now: Date): JobAction[] {
  const step = journey.steps.find((s) => s.id === job.stepId);
  if (!step) return [{ kind: 'skip', why: `step ${job.stepId} is no longer in the journey file`, recipient: null }];
  const common = { closingDate: job.closingDate, occurrence: job.occurrence };
  if (!snapshot) {
    return [{ kind: 'suppress', reason: 'opportunity_deleted', detail: 'the opportunity no longer exists', recipient: null, dueAt: null, ...common }];
  }
  const evaluations = evaluate(snapshot, journey, now).filter((e) => e.step.id === step.id);
  const changed = closingDateChanged(snapshot, step, job);
  if (changed && snapshot.opportunity.stage.outcome === 'open') {
    return evaluations.map((e): JobAction => (e.verdict.kind === 'spent'
      ? { kind: 'skip', why: `already ${e.verdict.status}`, recipient: e.recipient }
      : { kind: 'suppress', reason: 'closing_date_changed', detail: changed, recipient: e.recipient, dueAt: null, ...common }));
  }
  return evaluations.map((e) => actionFor(e));
}

function closingDateChanged(snapshot: DecisionSnapshot, step: Step, job: DeliveryRequest): string | null {
  if (step.trigger.kind !== 'closingDate') return null;
  const current = snapshot.opportunity.closingDate;
  return current === job.closingDate ? null : `computed for ${job.closingDate ?? 'no date'}, the opportunity now closes ${current ?? 'on no date'}`;
}

function actionFor(e: StepEvaluation): JobAction {
  const v = e.verdict;
  const where = { closingDate: e.closingDate, occurrence: e.occurrence, dueAt: e.due?.dueAt ?? null };
  switch (v.kind) {
    case 'send':
      return e.recipient ? { kind: 'send', evaluation: e, recipient: e.recipient }
        : { kind: 'suppress', reason: 'no_contact', detail: 'no recipient', recipient: null, ...where };
    case 'suppress':
      return { kind: 'suppress', reason: v.reason, detail: v.detail, recipient: e.recipient, ...where };
    case 'not_eligible':
      // At scan time a filter means "no row"; a job that finds it filtered at send time records why.
      return { kind: 'suppress', reason: v.reason ?? 'stage_not_eligible', detail: v.detail, recipient: e.recipient, ...where };
    case 'scheduled':
      return { kind: 'skip', why: `not due yet: ${v.detail}`, recipient: e.recipient };
    case 'spent':
      return { kind: 'skip', why: `already ${v.status}`, recipient: e.recipient };
  }
}
