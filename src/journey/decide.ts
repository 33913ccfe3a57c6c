/**
 * The one decision: what to do with each step of one opportunity at `now`. The scan, the worker,
 * `explain` and `simulate` all call `evaluate`; nothing else applies the reason table.
 */
import { dueTime, nextAllowed, type DueTime } from './due-time.ts';
import { compareDecimals } from './money.ts';
import { isCustomerFacing, isValidEmail, resolveRecipients, type Recipient } from './recipients.ts';
import { localDate } from './time.ts';
import type {
  DeliveryStatus, IsoDate, Journey, PastDecision, Snapshot, Step, SuppressionReason,
} from './types.ts';

export type Verdict =
  /** Due now and nothing stands in the way. */
  | { kind: 'send' }
  /** Due (or past due) and suppressed for `reason`: a row in `deliveries`. */
  | { kind: 'suppress'; reason: SuppressionReason; detail: string }
  /** Filtered out (closed, stage filters): no row at scan time. */
  | { kind: 'not_eligible'; reason: 'opportunity_closed' | 'stage_not_eligible' | null; detail: string }
  /** Not due yet (or waiting for quiet hours to end): `at` is when it will be. */
  | { kind: 'scheduled'; at: Date; detail: string }
  /** Already spent for this recipient and occurrence. */
  | { kind: 'spent'; status: DeliveryStatus; decidedAt: Date };

export interface StepEvaluation {
  step: Step;
  /** Null when the audience resolves to nobody. */
  recipient: Recipient | null;
  occurrence: string;
  /** The closing date the step is computed from: the opportunity's current one. */
  closingDate: IsoDate | null;
  due: DueTime | null;
  verdict: Verdict;
  /** Whether this verdict is a decision to write now (a suppression not written before). */
  record: boolean;
}

const SPENDING: ReadonlySet<DeliveryStatus> = new Set(['sent', 'unknown']);
const DAY = 86_400_000;

export function isSpending(d: Pick<PastDecision, 'status' | 'reason'>): boolean {
  return SPENDING.has(d.status) || (d.status === 'failed' && d.reason === 'smtp_rejected');
}

export function occurrenceOf(step: Step, closingDate: IsoDate | null): string {
  return step.repeat === 'onNewClosingDate' ? (closingDate ?? '') : '';
}

/** Every (step, recipient) of one opportunity, judged at `now`. */
export function evaluate(snapshot: Snapshot, journey: Journey, now: Date): StepEvaluation[] {
  const firstPass = journey.steps.flatMap((step) => evaluateStep(snapshot, journey, step, now));
  return firstPass.map((e) => applyCatchUp(e, firstPass, snapshot.history, now));
}

function evaluateStep(snapshot: Snapshot, journey: Journey, step: Step, now: Date): StepEvaluation[] {
  const { opportunity } = snapshot;
  const closingDate = opportunity.closingDate;
  const occurrence = occurrenceOf(step, closingDate);
  const recipients = resolveRecipients(snapshot, step, journey.defaults);
  const base = { step, occurrence, closingDate, record: false };
  const targets: (Recipient | null)[] = recipients.length > 0 ? recipients : [null];
  return targets.map((recipient) => {
    const zone = recipient?.timeZone ?? journey.defaults.timeZone;
    const due = dueTime(opportunity, step, zone);
    const verdict = judge(snapshot, journey, step, recipient, due, occurrence, now);
    const evaluation: StepEvaluation = { ...base, recipient, due, verdict };
    return { ...evaluation, record: shouldRecord(evaluation, snapshot.history, now) };
  });
}

function judge(
  snapshot: Snapshot, journey: Journey, step: Step, recipient: Recipient | null,
  due: DueTime | null, occurrence: string, now: Date,
): Verdict {
  const { opportunity } = snapshot;
  if (opportunity.stage.outcome !== 'open') {
    return { kind: 'not_eligible', reason: 'opportunity_closed', detail: `stage ${opportunity.stage.key} is ${opportunity.stage.outcome}` };
  }
  const filter = stageFilter(snapshot, step);
  if (filter) return { kind: 'not_eligible', reason: 'stage_not_eligible', detail: filter };
  if (!due) return { kind: 'not_eligible', reason: null, detail: triggerInactive(step) };
  const spent = recipient ? findSpent(snapshot.history, step.id, occurrence, recipient.address) : undefined;
  if (spent) return { kind: 'spent', status: spent.status, decidedAt: spent.decidedAt };
  if (now < due.dueAt) return { kind: 'scheduled', at: due.dueAt, detail: `due ${due.dueAt.toISOString()}` };
  const zone = recipient?.timeZone ?? journey.defaults.timeZone;
  if (isCustomerFacing(step) && opportunity.closingDate !== null && localDate(now, zone) > opportunity.closingDate) {
    return suppress('closing_date_passed', `closing date ${opportunity.closingDate} has passed in ${zone}`);
  }
  if (now >= due.windowEndsAt) {
    return suppress('expired', `window closed ${due.windowEndsAt.toISOString()}`);
  }
  return judgeRecipient(snapshot, journey, step, recipient, due, now);
}

function judgeRecipient(
  snapshot: Snapshot, journey: Journey, step: Step, recipient: Recipient | null, due: DueTime, now: Date,
): Verdict {
  if (!recipient) return suppress('no_contact', noContact(step));
  if (!isValidEmail(recipient.address)) {
    return suppress('invalid_email', recipient.address ? 'address is not valid' : 'recipient has no address');
  }
  const contact = recipient.contact;
  if (contact?.unsubscribedAt) return suppress('unsubscribed', `unsubscribed ${contact.unsubscribedAt.toISOString()}`);
  if (contact?.bouncedAt) return suppress('bounced', `bounced ${contact.bouncedAt.toISOString()}`);
  const activity = recentActivity(snapshot, step, now);
  if (activity) return suppress('recent_activity', activity);
  const cap = capReached(snapshot, journey, recipient, now);
  if (cap) return suppress('frequency_cap', cap);
  const allowed = nextAllowed(now, recipient.timeZone, step.timing);
  if (allowed > now) {
    return allowed < due.windowEndsAt
      ? { kind: 'scheduled', at: allowed, detail: `quiet hours or weekend until ${allowed.toISOString()}` }
      : suppress('expired', `quiet hours or weekend last past the window (${due.windowEndsAt.toISOString()})`);
  }
  return { kind: 'send' };
}

function suppress(reason: SuppressionReason, detail: string): Verdict {
  return { kind: 'suppress', reason, detail };
}

function stageFilter(snapshot: Snapshot, step: Step): string | null {
  const { opportunity } = snapshot;
  const stage = opportunity.stage;
  if (step.stages && !step.stages.includes(stage.key)) return `stage ${stage.key} is not one of ${step.stages.join(', ')}`;
  if (step.minProbability !== null && stage.probability < step.minProbability) {
    return `probability ${stage.probability} is below ${step.minProbability}`;
  }
  if (step.minAmount !== null) {
    if (opportunity.amount === null) return `amount is blank (minimum ${step.minAmount})`;
    if (compareDecimals(opportunity.amount, step.minAmount) < 0) return `amount ${opportunity.amount} is below ${step.minAmount}`;
  }
  if (step.trigger.kind === 'stageEntered' && stage.key !== step.trigger.stage) {
    return `stage ${stage.key} is not ${step.trigger.stage}`;
  }
  return null;
}

function triggerInactive(step: Step): string {
  return step.trigger.kind === 'closingDate' ? 'the opportunity has no closing date' : `not in stage ${step.trigger.stage}`;
}

function noContact(step: Step): string {
  if (step.to.kind === 'owner') return 'the opportunity has no owner email';
  if (step.to.kind === 'role') return `no contact with role ${step.to.role}`;
  return 'the opportunity has no primary contact';
}

function findSpent(history: readonly PastDecision[], stepId: string, occurrence: string, address: string): PastDecision | undefined {
  return history.find((d) => d.stepId === stepId && d.occurrence === occurrence && d.recipient === address && isSpending(d));
}

function recentActivity(snapshot: Snapshot, step: Step, now: Date): string | null {
  const span = step.skipIfRecentActivityMinutes;
  if (span === null) return null;
  const ms = span * 60_000;
  for (const a of snapshot.activities) {
    if (a.kind === 'note') continue;
    for (const [what, at] of [['done', a.doneAt], ['due', a.dueAt]] as const) {
      if (at && Math.abs(at.getTime() - now.getTime()) <= ms) return `${a.kind} ${a.id} ${what} ${at.toISOString()}`;
    }
  }
  return null;
}

function capReached(snapshot: Snapshot, journey: Journey, recipient: Recipient, now: Date): string | null {
  const cap = journey.defaults.frequencyCap;
  if (!cap || !recipient.contact) return null;
  const since = now.getTime() - cap.perDays * DAY;
  const recent = (snapshot.sentToContact.get(recipient.contact.id) ?? [])
    .filter((t) => t.getTime() > since && t.getTime() <= now.getTime());
  if (recent.length < cap.max) return null;
  const days = recent.map((t) => t.toISOString().slice(0, 10)).join(', ');
  return `${recent.length} email${recent.length === 1 ? '' : 's'} to this contact on ${days}, cap ${cap.max} per ${cap.perDays} day${cap.perDays === 1 ? '' : 's'}`;
}

/**
 * Catch-up: when several closingDate steps for the same recipient are inside their windows at
 * once, only the one nearest the closing date is sent; the others are superseded.
 */
function applyCatchUp(e: StepEvaluation, all: readonly StepEvaluation[], history: readonly PastDecision[], now: Date): StepEvaluation {
  const offset = closingOffset(e);
  if (offset === null || !inWindow(e, now)) return e;
  if (e.verdict.kind !== 'send' && !(e.verdict.kind === 'suppress' && isRecipientReason(e.verdict.reason))) return e;
  // Nearer: fewer days from the closing date; at equal distance, the later one.
  const nearer = all.find((o) => {
    const other = closingOffset(o);
    return o !== e && other !== null && o.recipient?.address === e.recipient?.address && o.step.to.kind === e.step.to.kind
      && inWindow(o, now) && competes(o)
      && (Math.abs(other) < Math.abs(offset) || (Math.abs(other) === Math.abs(offset) && other > offset));
  });
  if (!nearer) return e;
  const verdict: Verdict = { kind: 'suppress', reason: 'superseded', detail: `step ${nearer.step.id} is nearer the closing date` };
  const superseded = { ...e, verdict };
  return { ...superseded, record: shouldRecord(superseded, history, now) };
}

function closingOffset(e: StepEvaluation): number | null {
  return e.step.trigger.kind === 'closingDate' ? e.step.trigger.offsetDays : null;
}

function inWindow(e: StepEvaluation, now: Date): boolean {
  return e.due !== null && e.due.dueAt <= now && now < e.due.windowEndsAt;
}

/** A step competes for the catch-up when it is eligible and due: sent, sendable or held back only by its recipient. */
function competes(e: StepEvaluation): boolean {
  return e.verdict.kind === 'send' || e.verdict.kind === 'spent' || e.verdict.kind === 'scheduled'
    || (e.verdict.kind === 'suppress' && isRecipientReason(e.verdict.reason));
}

const RECIPIENT_REASONS: ReadonlySet<SuppressionReason> = new Set([
  'no_contact', 'invalid_email', 'unsubscribed', 'bounced', 'recent_activity', 'frequency_cap',
]);

function isRecipientReason(reason: SuppressionReason): boolean {
  return RECIPIENT_REASONS.has(reason);
}

/**
 * A suppression is written once per (step, recipient, closing date, reason). A step whose window
 * closed is written (`expired`, `closing_date_passed`) only when nothing was ever decided for it,
 * so a stale opportunity does not collect a row for every step it already settled.
 */
function shouldRecord(e: StepEvaluation, history: readonly PastDecision[], now: Date): boolean {
  if (e.verdict.kind !== 'suppress') return false;
  const address = e.recipient?.address ?? '';
  const same = history.filter((d) => d.stepId === e.step.id && d.recipient === address && d.closingDate === e.closingDate);
  if (same.some((d) => d.reason === (e.verdict as { reason: string }).reason)) return false;
  if (e.due && now >= e.due.windowEndsAt) return same.length === 0;
  return true;
}
