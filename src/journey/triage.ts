/**
 * Triage for the scan: which opportunities `evaluate` could act on at `now` (a send, or a
 * suppression to write), judged from the opportunity's own row and its decision history alone,
 * before its contacts, roles, activities and sends are loaded.
 *
 * The answer errs one way only: `false` means `evaluate` yields neither a send nor a row to write,
 * whatever the contacts, roles and activities hold; `true` means "load it and ask `evaluate`". A
 * step is settled, for every recipient and in every time zone, when the rules decide it with no
 * row:
 *
 * - `filters`, `trigger`: the stage, probability or amount filter fails on the row, or the trigger
 *   does not apply (no closing date, another stage): not eligible;
 * - `due`: it falls due after `now` even where local clocks run furthest ahead (UTC+14): scheduled;
 * - `not_spent`: it is spent for the one recipient it can have, the primary contact (by contact
 *   id) or the owner (by address), as `evaluate` matches a person;
 * - its window closed even where clocks run furthest behind (UTC-12), with quiet hours and
 *   weekends moving it as late as they can, and something was already decided for that recipient
 *   at this closing date: `evaluate` suppresses it (expired, closing date passed) and writes
 *   nothing, a settled step collecting no second row.
 *
 * Settled steps never change another step's verdict: the catch-up only weighs steps inside their
 * windows. Steps to a role are never settled here: their recipients are in rows not loaded yet.
 */
import { occurrenceOf } from './decide.ts';
import { isSpending, samePerson, stageFilter, type Person } from './rules.ts';
import { normalizeEmail } from './recipients.ts';
import { dayNumber } from './time.ts';
import type { Journey, Opportunity, PastDecision, Step } from './types.ts';

/**
 * What triage needs of a past decision. Any subset of the opportunity's history will do: a
 * decision left out can only leave a step unsettled, never settle one.
 */
export type TriageDecision = Pick<PastDecision, 'stepId' | 'occurrence' | 'recipient' | 'contactId' | 'status' | 'reason' | 'closingDate'>;

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
/** Local clocks run at most 14 hours ahead of UTC and 12 behind; one more hour each way for a DST gap. */
const AHEAD = 15 * HOUR;
const BEHIND = 13 * HOUR;
/** The furthest quiet hours (a day) and weekends (to Monday, then its quiet hours) can move a due time. */
const QUIET_MOVE = DAY;
const WEEKEND_MOVE = 3 * DAY;

/**
 * Whether `evaluate` could send or write a row for `opportunity` at `now`, given (part of) its
 * decision history.
 */
export function mayNeedDecision(opportunity: Opportunity, history: readonly TriageDecision[], journey: Journey, now: Date): boolean {
  // Parsed only for closing-date steps, as `evaluate` does: a stage-entered page may hold a date
  // PostgreSQL keeps but a calendar cannot (infinity). Throws, like `evaluate`, on such a date.
  const closingDay = opportunity.closingDate !== null && journey.steps.some((s) => s.trigger.kind === 'closingDate')
    ? dayNumber(opportunity.closingDate) : null;
  return journey.steps.some((step) => !settled(opportunity, closingDay, history, step, now.getTime()));
}

function settled(opportunity: Opportunity, closingDay: number | null, history: readonly TriageDecision[], step: Step, now: number): boolean {
  const bounds = dueBounds(opportunity, closingDay, step);
  if (bounds === null || now < bounds.earliest) return true;
  const who = onlyRecipient(opportunity, step);
  if (who === undefined) return false;
  const closingDate = opportunity.closingDate;
  const occurrence = occurrenceOf(step, closingDate);
  const mine = history.filter((d) => d.stepId === step.id && samePerson(d, who));
  // Nobody to send to is never spent.
  if (who !== NOBODY && mine.some((d) => d.occurrence === occurrence && isSpending(d))) return true;
  return now >= bounds.latestWindowEnd && mine.some((d) => d.closingDate === closingDate);
}

/**
 * Bounds, over every time zone, of when `step` falls due for `opportunity`: the earliest due
 * instant and the latest end of its window. Null when the step cannot apply (filters, trigger).
 */
function dueBounds(opportunity: Opportunity, closingDay: number | null, step: Step): { earliest: number; latestWindowEnd: number } | null {
  if (stageFilter({ opportunity }, step) !== null) return null;
  const { trigger, timing } = step;
  const sendAt = (timing.sendAt.hour * 60 + timing.sendAt.minute) * MINUTE;
  let first: number;
  let last: number;
  if (trigger.kind === 'closingDate') {
    if (closingDay === null) return null;
    first = last = (closingDay + trigger.offsetDays) * DAY + sendAt;
  } else {
    if (opportunity.stage.key !== trigger.stage) return null;
    // The local day it was entered is the UTC day, or the one before or after. (Entered after
    // `sendAt` with daysAfter 0, it is due when entered: before the end of that UTC day + 1.)
    const utcDay = Math.floor(opportunity.stageEnteredAt.getTime() / DAY);
    first = (utcDay - 1 + trigger.daysAfter) * DAY + sendAt;
    last = (utcDay + 1 + trigger.daysAfter) * DAY + sendAt;
  }
  const moves = (timing.quietHours ? QUIET_MOVE : 0) + (timing.skipWeekends ? WEEKEND_MOVE : 0);
  const latestDue = last + BEHIND + moves;
  return { earliest: first - AHEAD, latestWindowEnd: latestDue + timing.windowMinutes * MINUTE };
}

/**
 * The one person the step can go to, as far as the row tells: the primary contact (known by id
 * only, so fewer past decisions match than `evaluate` would match; the foreign key keeps its row
 * in place), the owner, or nobody (address `''`); undefined when the step goes to a role.
 */
function onlyRecipient(opportunity: Opportunity, step: Step): Person | undefined {
  switch (step.to.kind) {
    case 'primary': {
      const id = opportunity.primaryContactId;
      return id === null ? NOBODY : { address: null, contactId: id };
    }
    case 'owner': {
      const address = normalizeEmail(opportunity.ownerEmail);
      return address === '' ? NOBODY : { address, contactId: null };
    }
    case 'role':
      return undefined;
  }
}

const NOBODY: Person = { address: '', contactId: null };
