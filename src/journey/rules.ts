/**
 * The rules a due step must pass, in the order of SPEC section 3's reason table. The first rule
 * that fails gives the verdict; `explain` also shows, in words, the rules that passed.
 */
import type { DueTime } from './due-time.ts';
import { nextAllowed } from './due-time.ts';
import { compareDecimals } from './money.ts';
import { isCustomerFacing, isValidEmail, type Recipient } from './recipients.ts';
import { localDate } from './time.ts';
import type { DecisionSnapshot, DeliveryStatus, IsoDate, Journey, Opportunity, PastDecision, Step, SuppressionReason } from './types.ts';

export type Verdict =
  /** Due now and nothing stands in the way. */
  | { kind: 'send' }
  /** Due (or past due) and suppressed for `reason`: a row in `deliveries`. */
  | { kind: 'suppress'; reason: SuppressionReason; detail: string }
  /** Filtered out (closed, stage filters, trigger not applicable): no row at scan time. */
  | { kind: 'not_eligible'; reason: 'opportunity_closed' | 'stage_not_eligible' | null; detail: string }
  /** Not due yet (or waiting for quiet hours to end): `at` is when it will be. */
  | { kind: 'scheduled'; at: Date; detail: string }
  /** Already spent for this recipient and occurrence. */
  | { kind: 'spent'; status: DeliveryStatus; decidedAt: Date };

export interface RuleContext {
  snapshot: DecisionSnapshot;
  journey: Journey;
  step: Step;
  recipient: Recipient | null;
  due: DueTime | null;
  occurrence: string;
  now: Date;
}

/** One rule as `explain` shows it. */
export interface RuleCheck {
  rule: string;
  passed: boolean;
  detail: string;
}

interface Rule {
  name: string;
  /** The verdict when the rule fails; null when it passes. */
  check(ctx: RuleContext): Verdict | null;
  /** Why it passed, in words (computed only for `explain`). */
  passed(ctx: RuleContext): string;
}

const DAY = 86_400_000;

function suppress(reason: SuppressionReason, detail: string): Verdict {
  return { kind: 'suppress', reason, detail };
}

const zoneOf = (ctx: RuleContext) => ctx.recipient?.timeZone ?? ctx.journey.defaults.timeZone;

const RULES: readonly Rule[] = [
  // First: a step already sent stays "sent" whatever happened since (won, moved, unsubscribed).
  {
    name: 'not_spent',
    check: ({ recipient, snapshot, step, occurrence }) => {
      const spent = recipient ? findSpent(snapshot.history, step.id, occurrence, recipient) : undefined;
      return spent ? { kind: 'spent', status: spent.status, decidedAt: spent.decidedAt } : null;
    },
    passed: ({ occurrence }) => `not sent before${occurrence ? ` for the closing date ${occurrence}` : ''}`,
  },
  {
    name: 'open',
    check: ({ snapshot: { opportunity: o } }) => (o.stage.outcome === 'open' ? null
      : { kind: 'not_eligible', reason: 'opportunity_closed', detail: `stage ${o.stage.key} is ${o.stage.outcome}` }),
    passed: ({ snapshot: { opportunity: o } }) => `stage ${o.stage.key} is open`,
  },
  {
    name: 'filters',
    check: (ctx) => {
      const failed = stageFilter(ctx.snapshot, ctx.step);
      return failed ? { kind: 'not_eligible', reason: 'stage_not_eligible', detail: failed } : null;
    },
    passed: ({ snapshot: { opportunity: o } }) => `stage ${o.stage.key}, probability ${o.stage.probability}, amount ${o.amount ?? 'blank'} meet the step's filters`,
  },
  {
    name: 'trigger',
    check: ({ due, step }) => (due ? null : { kind: 'not_eligible', reason: null,
      detail: step.trigger.kind === 'closingDate' ? 'the opportunity has no closing date' : `not in stage ${step.trigger.stage}` }),
    passed: ({ due }) => `computed for the local day ${due!.day}`,
  },
  {
    name: 'due',
    check: ({ due, now }) => (now >= due!.dueAt ? null : { kind: 'scheduled', at: due!.dueAt, detail: `due ${due!.dueAt.toISOString()}` }),
    passed: ({ due }) => `due ${due!.dueAt.toISOString()}`,
  },
  {
    name: 'closing_date',
    check: (ctx) => (closingDatePassed(ctx.snapshot.opportunity.closingDate, ctx.step, zoneOf(ctx), ctx.now)
      ? suppress('closing_date_passed', `closing date ${ctx.snapshot.opportunity.closingDate} has passed in ${zoneOf(ctx)}`)
      : null),
    passed: (ctx) => (isCustomerFacing(ctx.step)
      ? `closing date ${ctx.snapshot.opportunity.closingDate ?? '(none)'} not passed in ${zoneOf(ctx)}`
      : 'owner steps may fire after the closing date'),
  },
  {
    name: 'window',
    check: ({ due, now }) => (now < due!.windowEndsAt ? null : suppress('expired', `window closed ${due!.windowEndsAt.toISOString()}`)),
    passed: ({ due }) => `inside the window until ${due!.windowEndsAt.toISOString()}`,
  },
  {
    name: 'recipient',
    check: ({ recipient, step }) => (recipient ? null : suppress('no_contact', noContact(step))),
    passed: ({ recipient }) => (recipient!.contact ? `contact ${recipient!.contact.id} (${recipient!.audience})` : 'the owner'),
  },
  {
    name: 'address',
    check: ({ recipient }) => (isValidEmail(recipient!.address) ? null
      : suppress('invalid_email', recipient!.address ? 'address is not valid' : 'recipient has no address')),
    passed: () => 'address is valid',
  },
  {
    name: 'subscribed',
    check: ({ recipient }) => {
      const at = recipient!.contact?.unsubscribedAt;
      return at ? suppress('unsubscribed', `unsubscribed ${at.toISOString()}`) : null;
    },
    passed: () => 'not unsubscribed',
  },
  {
    name: 'not_bounced',
    check: ({ recipient }) => {
      const at = recipient!.contact?.bouncedAt;
      return at ? suppress('bounced', `bounced ${at.toISOString()}`) : null;
    },
    passed: () => 'no bounce recorded',
  },
  {
    name: 'recent_activity',
    check: (ctx) => {
      const found = recentActivity(ctx);
      return found ? suppress('recent_activity', found) : null;
    },
    passed: ({ step }) => (step.skipIfRecentActivityMinutes === null ? 'the step does not look at activities'
      : `no call or task due or done within ${formatMinutes(step.skipIfRecentActivityMinutes)} of now`),
  },
  {
    name: 'frequency_cap',
    check: (ctx) => {
      const cap = capCheck(ctx);
      return cap && !cap.ok ? suppress('frequency_cap', cap.detail) : null;
    },
    passed: (ctx) => capCheck(ctx)?.detail ?? (ctx.recipient?.contact ? 'no frequency cap' : 'owner emails are not capped'),
  },
  {
    name: 'quiet_hours',
    check: ({ now, recipient, step, due }) => {
      const allowed = nextAllowed(now, recipient!.timeZone, step.timing);
      if (allowed <= now) return null;
      return allowed < due!.windowEndsAt
        ? { kind: 'scheduled', at: allowed, detail: `quiet hours or weekend until ${allowed.toISOString()}` }
        : suppress('expired', `quiet hours or weekend last past the window (${due!.windowEndsAt.toISOString()})`);
    },
    passed: ({ step }) => (step.timing.quietHours || step.timing.skipWeekends ? 'outside quiet hours and weekends' : 'no quiet hours'),
  },
];

/** The verdict of the first failing rule, or send. With `explain`, every rule checked, in words. */
export function judge(ctx: RuleContext, explain = false): { verdict: Verdict; checks: RuleCheck[] } {
  const checks: RuleCheck[] = [];
  for (const rule of RULES) {
    const verdict = rule.check(ctx);
    if (verdict) {
      if (explain) checks.push({ rule: rule.name, passed: false, detail: failureDetail(verdict) });
      return { verdict, checks };
    }
    if (explain) checks.push({ rule: rule.name, passed: true, detail: rule.passed(ctx) });
  }
  return { verdict: { kind: 'send' }, checks };
}

function failureDetail(verdict: Verdict): string {
  if (verdict.kind === 'spent') return `already ${verdict.status} ${verdict.decidedAt.toISOString()}`;
  return 'detail' in verdict ? verdict.detail : '';
}

/** A customer-facing step of an opportunity whose closing date has passed in `zone` (the rule `closing_date`). */
export function closingDatePassed(closing: IsoDate | null, step: Step, zone: string, now: Date): boolean {
  return isCustomerFacing(step) && closing !== null && localDate(now, zone) > closing;
}

export function stageFilter(snapshot: { opportunity: FilteredOpportunity }, step: Step): string | null {
  return whyFiltered(snapshot.opportunity, step, true);
}

/** `stageFilter` lets the opportunity through: for triage, which asks it of every row and needs no reason. */
export function passesStageFilter(opportunity: FilteredOpportunity, step: Step): boolean {
  return whyFiltered(opportunity, step, false) === null;
}

/** What the step's filters read of an opportunity. */
export type FilteredOpportunity = Pick<Opportunity, 'stage' | 'amount'>;

/** Why the step's filters stop `opportunity`, or null; the reason spelled out only when `explain`. */
function whyFiltered(opportunity: FilteredOpportunity, step: Step, explain: boolean): string | null {
  const stage = opportunity.stage;
  if (step.stages && !step.stages.includes(stage.key)) return explain ? `stage ${stage.key} is not one of ${step.stages.join(', ')}` : FILTERED;
  if (step.minProbability !== null && stage.probability < step.minProbability) {
    return explain ? `probability ${stage.probability} is below ${step.minProbability}` : FILTERED;
  }
  if (step.minAmount !== null) {
    if (opportunity.amount === null) return explain ? `amount is blank (minimum ${step.minAmount})` : FILTERED;
    if (compareDecimals(opportunity.amount, step.minAmount) < 0) return explain ? `amount ${opportunity.amount} is below ${step.minAmount}` : FILTERED;
  }
  if (step.trigger.kind === 'stageEntered' && stage.key !== step.trigger.stage) {
    return explain ? `stage ${stage.key} is not ${step.trigger.stage}` : FILTERED;
  }
  return null;
}

const FILTERED = 'filtered';

function noContact(step: Step): string {
  if (step.to.kind === 'owner') return 'the opportunity has no owner email';
  if (step.to.kind === 'role') return `no contact with role ${step.to.role}`;
  return 'the opportunity has no primary contact';
}

const SPENDING: ReadonlySet<DeliveryStatus> = new Set(['sent', 'unknown']);

export function isSpending(d: Pick<PastDecision, 'status' | 'reason'>): boolean {
  return SPENDING.has(d.status) || (d.status === 'failed' && d.reason === 'smtp_rejected');
}

/** Spent for this person: the same address, or the same contact under an address since changed. */
function findSpent(history: readonly PastDecision[], stepId: string, occurrence: string, recipient: Recipient): PastDecision | undefined {
  const who = personOf(recipient);
  return history.find((d) => d.stepId === stepId && d.occurrence === occurrence && isSpending(d) && samePerson(d, who));
}

/** Whom a decision is about: an address (`''` for nobody) and the contact, when there is one. */
export interface Person {
  /** Null when not known (then only the contact id can match). */
  address: string | null;
  contactId: number | null;
}

export function personOf(recipient: Recipient | null): Person {
  return { address: recipient?.address ?? '', contactId: recipient?.contact?.id ?? null };
}

/**
 * Whether a past decision was about this person: the same address, or the same contact under an
 * address since changed (a step is spent for a person, not for one spelling of an address).
 */
export function samePerson(d: Pick<PastDecision, 'recipient' | 'contactId'>, who: Person): boolean {
  return (who.address !== null && d.recipient === who.address) || (who.contactId !== null && d.contactId === who.contactId);
}

function recentActivity({ snapshot, step, now }: RuleContext): string | null {
  const span = step.skipIfRecentActivityMinutes;
  if (span === null) return null;
  const ms = span * 60_000;
  for (const a of snapshot.activities) {
    if (a.kind === 'note') continue;
    for (const [what, at] of [['done', a.doneAt], ['due', a.dueAt]] as const) {
      if (at && Math.abs(at.getTime() - now.getTime()) <= ms) return `${a.kind} ${a.id} ${what} ${at.toISOString()}, within ${formatMinutes(span)}`;
    }
  }
  return null;
}

/** The frequency cap for a contact recipient, or null when none applies (no cap, or the owner). */
function capCheck({ snapshot, journey, recipient, now }: RuleContext): { ok: boolean; detail: string } | null {
  const cap = journey.defaults.frequencyCap;
  if (!cap || !recipient?.contact) return null;
  const since = now.getTime() - cap.perDays * DAY;
  // No upper bound: a send another worker recorded a moment "after" this one's clock still counts.
  const recent = (snapshot.sentToContact.get(recipient.contact.id) ?? []).filter((t) => t.getTime() > since);
  const days = recent.map((t) => t.toISOString().slice(0, 10)).join(', ');
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  const limit = `cap ${cap.max} per ${plural(cap.perDays, 'day')}`;
  return recent.length < cap.max
    ? { ok: true, detail: `${plural(recent.length, 'email')} to this contact in the last ${plural(cap.perDays, 'day')}, ${limit}` }
    : { ok: false, detail: `${plural(recent.length, 'email')} to this contact on ${days}, ${limit}` };
}

function formatMinutes(minutes: number): string {
  if (minutes % 1440 === 0) return `${minutes / 1440}d`;
  if (minutes % 60 === 0) return `${minutes / 60}h`;
  return `${minutes}m`;
}
