/**
 * The one decision: what to do with each step of one opportunity at `now`. The scan, the worker,
 * `explain` and `simulate` all call `evaluate`; nothing else applies the reason table.
 */
import { dueTime, type DueTime } from './due-time.ts';
import { resolveRecipients, type Recipient } from './recipients.ts';
import { isSpending, judge, personOf, samePerson, type RuleCheck, type Verdict } from './rules.ts';
import type { DecisionSnapshot, IsoDate, Journey, PastDecision, Step, SuppressionReason } from './types.ts';

export type { Verdict, RuleCheck } from './rules.ts';
export { isSpending } from './rules.ts';

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
  /** With `explain`: each rule checked, passed or failed, in words. */
  checks: RuleCheck[];
}

export interface EvaluateOptions {
  /** Describe every rule checked (for `explain`); the scan leaves it off. @defaultValue false */
  explain?: boolean;
}

export function occurrenceOf(step: Step, closingDate: IsoDate | null): string {
  return step.repeat === 'onNewClosingDate' ? (closingDate ?? '') : '';
}

/** Every (step, recipient) of one opportunity, judged at `now`. */
export function evaluate(snapshot: DecisionSnapshot, journey: Journey, now: Date, options: EvaluateOptions = {}): StepEvaluation[] {
  const firstPass = journey.steps.flatMap((step) => evaluateStep(snapshot, journey, step, now, options.explain ?? false));
  return firstPass.map((e) => applyCatchUp(e, firstPass, snapshot.history, now));
}

function evaluateStep(snapshot: DecisionSnapshot, journey: Journey, step: Step, now: Date, explain: boolean): StepEvaluation[] {
  const { opportunity } = snapshot;
  const closingDate = opportunity.closingDate;
  const occurrence = occurrenceOf(step, closingDate);
  const recipients = resolveRecipients(snapshot, step, journey.defaults);
  const targets: (Recipient | null)[] = recipients.length > 0 ? recipients : [null];
  return targets.map((recipient) => {
    const zone = recipient?.timeZone ?? journey.defaults.timeZone;
    const due = dueTime(opportunity, step, zone);
    const { verdict, checks } = judge({ snapshot, journey, step, recipient, due, occurrence, now }, explain);
    const evaluation: StepEvaluation = { step, recipient, occurrence, closingDate, due, verdict, record: false, checks };
    evaluation.record = shouldRecord(evaluation, snapshot.history, now);
    return evaluation;
  });
}

/**
 * Catch-up: when several closingDate steps for the same recipient are inside their windows at
 * once, only the one nearest the closing date is sent; the others are superseded. They stay so
 * once the nearer step's window has closed, while theirs is still open: a nearer step sent for
 * this closing date supersedes them whatever its window, or the customer would get "closing in 7
 * days" the day after "closing in 3 days".
 */
function applyCatchUp(e: StepEvaluation, all: readonly StepEvaluation[], history: readonly PastDecision[], now: Date): StepEvaluation {
  const offset = closingOffset(e);
  if (offset === null || !inWindow(e, now)) return e;
  if (e.verdict.kind !== 'send' && !(e.verdict.kind === 'suppress' && isRecipientReason(e.verdict.reason))) return e;
  // Nearer: fewer days from the closing date; at equal distance, the later one.
  const nearer = (o: StepEvaluation) => {
    const other = closingOffset(o);
    return o !== e && other !== null && o.recipient?.address === e.recipient?.address && o.step.to.kind === e.step.to.kind
      && (Math.abs(other) < Math.abs(offset) || (Math.abs(other) === Math.abs(offset) && other > offset));
  };
  const due = all.find((o) => nearer(o) && inWindow(o, now) && competes(o));
  const sent = due ? undefined : all.find((o) => nearer(o) && spentAtThisClosingDate(o, history));
  const by = due ?? sent;
  if (!by) return e;
  const verdict: Verdict = {
    kind: 'suppress', reason: 'superseded',
    detail: due ? `step ${by.step.id} is nearer the closing date` : `step ${by.step.id}, nearer the closing date, was sent for it already`,
  };
  // Superseded outranks the recipient's own rules: show the checks up to the window, then why.
  const upToWindow = e.checks.slice(0, e.checks.findIndex((c) => c.rule === 'window') + 1);
  const checks = e.checks.length ? [...upToWindow, { rule: 'catch_up', passed: false, detail: verdict.detail }] : [];
  const superseded = { ...e, verdict, checks };
  return { ...superseded, record: shouldRecord(superseded, history, now) };
}

/** A spending decision (`isSpending`) of `o`'s step for its recipient, at the opportunity's current closing date. */
function spentAtThisClosingDate(o: StepEvaluation, history: readonly PastDecision[]): boolean {
  const person = personOf(o.recipient);
  return history.some((d) => d.stepId === o.step.id && d.closingDate === o.closingDate && isSpending(d) && samePerson(d, person));
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
 * A suppression is written once per (step, recipient, closing date, reason), the recipient being
 * the person (see `samePerson`). A step whose window closed is written (`expired`,
 * `closing_date_passed`) only when nothing was ever decided for it, so a stale opportunity does
 * not collect a row for every step it already settled.
 */
function shouldRecord(e: StepEvaluation, history: readonly PastDecision[], now: Date): boolean {
  if (e.verdict.kind !== 'suppress') return false;
  const same = history.filter((d) => d.stepId === e.step.id && d.closingDate === e.closingDate && samePerson(d, personOf(e.recipient)));
  if (same.some((d) => d.reason === (e.verdict as { reason: string }).reason)) return false;
  if (e.due && now >= e.due.windowEndsAt) return same.length === 0;
  return true;
}
