/**
 * Glossary
 *
 * - **Opportunity**: a CRM deal: a title (the customer's own reference), an amount (may be blank),
 *   a closing date (a calendar day, a best guess that moves), a stage and people to talk to.
 * - **Stage**: a step of the sales pipeline, mapped to a probability; its `outcome` is `open`,
 *   `won` or `lost`. Won and lost end all customer communication.
 * - **Journey**: the file `journeys.yaml`: `defaults` and an ordered list of steps.
 * - **Step**: one email of a journey: a trigger (when), a template (what), an audience (to whom).
 * - **Audience**: who a step addresses: the primary contact, the owner, or contacts with a role.
 * - **Recipient**: one person an audience resolves to for one opportunity, at one moment.
 * - **Occurrence**: `''` for steps sent once per opportunity, the closing date (ISO) for steps that
 *   say `repeat: onNewClosingDate`.
 * - **Due time**: the instant a step falls due for one recipient, derived from the opportunity's
 *   *current* rows at every scan; never stored as a timer.
 * - **Window**: how long after its due time a step may still be sent; after that it is `expired`.
 * - **Verdict**: what the engine decides for one (step, recipient) at one instant: send now,
 *   suppress with a reason, not eligible, not due yet, or already spent.
 * - **Delivery**: one row of the decision log (`deliveries`): sent, suppressed, failed or unknown.
 * - **Spent**: a step is spent for a recipient by a `sent`, `unknown`, or `failed`/`smtp_rejected`
 *   delivery of the same occurrence. A suppression spends nothing.
 *
 * Everything in `src/journey/` is pure: no database, queue, mail or template imports, and no
 * clock. `now` is always an argument.
 */

/** A calendar day, `YYYY-MM-DD`. Never a JavaScript `Date`: a day has no time zone. */
export type IsoDate = string;

export type Outcome = 'open' | 'won' | 'lost';

export interface Stage {
  key: string;
  label: string;
  /** 0..100 */
  probability: number;
  outcome: Outcome;
  position: number;
}

export interface Contact {
  id: number;
  email: string | null;
  firstName: string | null;
  lastName: string | null;
  locale: string;
  /** IANA zone name as the CRM wrote it; may be unknown (then `defaults.timeZone` is used). */
  timeZone: string | null;
  unsubscribedAt: Date | null;
  bouncedAt: Date | null;
}

export interface Opportunity {
  id: number;
  title: string;
  /** Exact decimal as PostgreSQL returns it (`"12000.00"`), or null when blank. */
  amount: string | null;
  currency: string;
  closingDate: IsoDate | null;
  stage: Stage;
  primaryContactId: number | null;
  ownerEmail: string | null;
  stageEnteredAt: Date;
  createdAt: Date;
  updatedAt: Date;
}

export interface ContactRole {
  contactId: number;
  role: string;
}

export type ActivityKind = 'call' | 'task' | 'note';

export interface Activity {
  id: number;
  kind: ActivityKind;
  dueAt: Date | null;
  doneAt: Date | null;
}

export type DeliveryStatus = 'sent' | 'suppressed' | 'failed' | 'unknown';

/** A past decision, as the engine needs it (a subset of a `deliveries` row). */
export interface PastDecision {
  stepId: string;
  occurrence: string;
  /** Normalised address, or `''` when there was no recipient. */
  recipient: string;
  contactId: number | null;
  status: DeliveryStatus;
  reason: Reason | null;
  closingDate: IsoDate | null;
  decidedAt: Date;
}

/**
 * What deciding reads of an opportunity: the scan reads no more of each row (`DECISION_COLUMNS` in
 * `src/db/opportunities.ts`), so that a page in memory is a third lighter. Rendering needs the rest
 * (`Opportunity`).
 */
export type DecisionOpportunity = Omit<Opportunity, 'title' | 'currency' | 'createdAt' | 'updatedAt'>;

/**
 * Everything the decision needs about one opportunity, loaded at one moment; `O` is the whole
 * `Opportunity` unless said otherwise (`DecisionSnapshot`).
 */
export interface Snapshot<O extends DecisionOpportunity = Opportunity> {
  opportunity: O;
  /** The primary contact and every contact with a role on this opportunity, by id. */
  contacts: ReadonlyMap<number, Contact>;
  roles: readonly ContactRole[];
  activities: readonly Activity[];
  /** Past decisions of this opportunity (every step, every recipient). */
  history: readonly PastDecision[];
  /** Emails sent to each contact of this opportunity, all opportunities and journeys together. */
  sentToContact: ReadonlyMap<number, readonly Date[]>;
}

/** A snapshot as the scan loads it: enough to decide, not to render. */
export type DecisionSnapshot = Snapshot<DecisionOpportunity>;

/** A local wall-clock time. */
export interface LocalTime {
  hour: number;
  minute: number;
}

export interface QuietHours {
  from: LocalTime;
  to: LocalTime;
}

/** When a step is sent, once its calendar day is known. */
export interface Timing {
  /** Local time of day the step falls due. @defaultValue 09:00 */
  sendAt: LocalTime;
  /** Minutes after the (moved) due time during which the step may still be sent. @defaultValue 1440 */
  windowMinutes: number;
  /** Local hours during which nothing is sent. @defaultValue null (none) */
  quietHours: QuietHours | null;
  /** Move due times that fall on Saturday or Sunday to Monday. @defaultValue false */
  skipWeekends: boolean;
}

export type Trigger =
  /** `offsetDays` < 0: days before the closing date; > 0: days after (owner steps only). */
  | { kind: 'closingDate'; offsetDays: number }
  | { kind: 'stageEntered'; stage: string; daysAfter: number };

export type Audience = { kind: 'primary' } | { kind: 'owner' } | { kind: 'role'; role: string };

export type Repeat = 'never' | 'onNewClosingDate';

export interface Step {
  /** Unique and stable: renaming a step starts it afresh. */
  id: string;
  /** Template name: the file `<template>.hbs` in the templates folder. */
  template: string;
  trigger: Trigger;
  to: Audience;
  /** Open stage keys the step applies to; null: every open stage. */
  stages: readonly string[] | null;
  /** 0..100, or null for no minimum. */
  minProbability: number | null;
  /** Exact decimal string, or null for no minimum. A blank amount never meets a minimum. */
  minAmount: string | null;
  /** Minutes; a call or task due or done within this span of the send suppresses it. */
  skipIfRecentActivityMinutes: number | null;
  repeat: Repeat;
  timing: Timing;
  /** 1-based line of the step in the journey file, for messages. */
  line: number;
}

export interface FrequencyCap {
  max: number;
  perDays: number;
}

export interface JourneyDefaults {
  /** Used when a contact has no (or an unknown) time zone, and for owner steps. @defaultValue UTC */
  timeZone: string;
  /** Customer emails per contact, all journeys together. @defaultValue null (none) */
  frequencyCap: FrequencyCap | null;
}

export interface Journey {
  /** Path of the journey file, for messages. */
  file: string;
  defaults: JourneyDefaults;
  steps: readonly Step[];
}

/** Reasons, in order of precedence when several apply (SPEC section 3). */
export const SUPPRESSION_REASONS = [
  'opportunity_deleted',
  'opportunity_closed',
  'closing_date_changed',
  'stage_not_eligible',
  'closing_date_passed',
  'expired',
  'superseded',
  'no_contact',
  'invalid_email',
  'unsubscribed',
  'bounced',
  'recent_activity',
  'frequency_cap',
] as const;

export type SuppressionReason = (typeof SUPPRESSION_REASONS)[number];

export const FAILURE_REASONS = ['smtp_rejected', 'template_error'] as const;
export type FailureReason = (typeof FAILURE_REASONS)[number];

export type Reason = SuppressionReason | FailureReason;
