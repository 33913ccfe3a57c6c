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
 * - `due`: it falls due after `now` even where local clocks run furthest ahead (UTC+14), or for a
 *   stage-entered step, even where the stage was entered just before local midnight: scheduled;
 * - `not_spent`: it is spent for the one recipient it can have, the primary contact (by contact
 *   id) or the owner (by address), as `evaluate` matches a person;
 * - its window closed even where clocks run furthest behind (UTC-12), with quiet hours and
 *   weekends moving it as late as they can, and something was already decided for that recipient
 *   at this closing date: `evaluate` suppresses it (expired, closing date passed) and writes
 *   nothing, a settled step collecting no second row.
 *
 * Where the one recipient is the owner, or nobody, the time zone is the journey's
 * (`defaults.timeZone`), as `evaluate` has it: the step's due time and window are then computed
 * exactly, with `evaluate`'s own `dueTime`, instead of bounded over every zone.
 *
 * Settled steps never change another step's verdict: the catch-up only weighs steps inside their
 * windows. Steps to a role are never settled here: their recipients are in rows not loaded yet.
 */
import { occurrenceOf } from './decide.ts';
import { isSpending, passesStageFilter } from './rules.ts';
import { normalizeEmail } from './recipients.ts';
import { dueTime, type DueOpportunity } from './due-time.ts';
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
 * What triage reads of an opportunity. `stageEnteredAt` may be null when `journey` has no
 * stage-entered step (the scan's closing-date pass does not parse it); a stage-entered step is
 * then left unsettled.
 */
export type TriageOpportunity = Pick<Opportunity, 'closingDate' | 'stage' | 'amount' | 'primaryContactId' | 'ownerEmail'>
  & { stageEnteredAt: Date | null };

/**
 * Whether `evaluate` could send or write a row for `opportunity` at `now`, given (part of) its
 * decision history. Run on every row a scan reads, so it allocates nothing it can avoid.
 */
export function mayNeedDecision(opportunity: TriageOpportunity, history: readonly TriageDecision[], journey: Journey, now: Date): boolean {
  // Parsed only for closing-date steps, as `evaluate` does: a stage-entered page may hold a date
  // PostgreSQL keeps but a calendar cannot (infinity). Throws, like `evaluate`, on such a date.
  const closingDay = opportunity.closingDate !== null && journey.steps.some((s) => s.trigger.kind === 'closingDate')
    ? dayNumber(opportunity.closingDate) : null;
  const at = now.getTime();
  const { steps } = journey;
  const zone = journey.defaults.timeZone;
  for (let i = 0; i < steps.length; i++) if (!settled(opportunity, closingDay, history, steps[i]!, at, zone)) return true;
  return false;
}

function settled(
  opportunity: TriageOpportunity, closingDay: number | null, history: readonly TriageDecision[], step: Step, now: number, defaultZone: string,
): boolean {
  const first = firstDueDay(opportunity, closingDay, step);
  if (first === null) return true;
  if (Number.isNaN(first)) return false;
  const { trigger, timing } = step;
  const sendAt = (timing.sendAt.hour * 60 + timing.sendAt.minute) * MINUTE;
  // The earliest instant it falls due, over every time zone.
  if (now < earliestDue(opportunity, trigger, first, sendAt)) return true;
  const who = onlyRecipient(opportunity, step);
  if (who === undefined) return false;
  const closingDate = opportunity.closingDate;
  const occurrence = occurrenceOf(step, closingDate);
  let spent = false;
  let decidedAtThisClosingDate = false;
  for (let i = 0; i < history.length; i++) {
    const d = history[i]!;
    if (d.stepId !== step.id || !(typeof who === 'number' ? d.contactId === who : d.recipient === who)) continue;
    if (d.occurrence === occurrence && isSpending(d)) spent = true;
    if (d.closingDate === closingDate) decidedAtThisClosingDate = true;
  }
  // Nobody to send to is never spent.
  if (who !== NOBODY && spent) return true;
  // The latest end of its window, over every time zone.
  const lastDay = first + (trigger.kind === 'stageEntered' ? 2 : 0);
  const moves = (timing.quietHours ? QUIET_MOVE : 0) + (timing.skipWeekends ? WEEKEND_MOVE : 0);
  if (decidedAtThisClosingDate && now >= lastDay * DAY + sendAt + BEHIND + moves + timing.windowMinutes * MINUTE) return true;
  if (typeof who === 'number') return false;
  // The owner (an address) and nobody are in the journey's time zone, as `evaluate` has them: their
  // due time and window are known here, exactly. Asked last, for the few rows still open here.
  // (A stage-entered step gets here with its `stageEnteredAt`.)
  const due = dueTime(opportunity as DueOpportunity, step, defaultZone);
  if (due === null) return false;
  return now < due.dueAt.getTime() || (decidedAtThisClosingDate && now >= due.windowEndsAt.getTime());
}

/**
 * The earliest instant `step` can fall due, in any time zone (quiet hours and weekends only move
 * it later). A closing-date step: `sendAt` on its first possible day where clocks run furthest
 * ahead. A stage-entered step: the local day it was entered began less than a day before it was
 * entered (wherever that was), so `sendAt` of `daysAfter` days later comes after that instant
 * plus `daysAfter` - 1 days and `sendAt`, give or take the zone's change of offset in between
 * (`OFFSET_CHANGE`).
 */
function earliestDue(opportunity: TriageOpportunity, trigger: Step['trigger'], first: number, sendAt: number): number {
  if (trigger.kind === 'closingDate') return first * DAY + sendAt - AHEAD;
  return opportunity.stageEnteredAt!.getTime() + (trigger.daysAfter - 1) * DAY + sendAt - OFFSET_CHANGE;
}

/** The most a zone's offset changes between two instants a few days apart (DST: one hour), and one more. */
const OFFSET_CHANGE = 2 * HOUR;

/**
 * The first UTC day (a day number) whose `sendAt` could be `step`'s due time for `opportunity`,
 * before time zones, quiet hours and weekends move it; a stage-entered step may fall due on any
 * of three days from there. Null when the step cannot apply (filters, trigger); NaN when the row
 * does not tell (no `stageEnteredAt`).
 */
function firstDueDay(opportunity: TriageOpportunity, closingDay: number | null, step: Step): number | null {
  if (!passesStageFilter(opportunity, step)) return null;
  const { trigger } = step;
  if (trigger.kind === 'closingDate') return closingDay === null ? null : closingDay + trigger.offsetDays;
  if (opportunity.stage.key !== trigger.stage) return null;
  if (opportunity.stageEnteredAt === null) return Number.NaN;
  // The local day it was entered is the UTC day, or the one before or after. (Entered after
  // `sendAt` with daysAfter 0, it is due when entered: before the end of that UTC day + 1.)
  return Math.floor(opportunity.stageEnteredAt.getTime() / DAY) - 1 + trigger.daysAfter;
}

/**
 * The one person the step can go to, as far as the row tells, as `samePerson` would match a
 * decision about them: the primary contact by its id only (so fewer past decisions match than
 * `evaluate` would match; the foreign key keeps its row in place), the owner by address, or
 * nobody (`NOBODY`, the address `''`); undefined when the step goes to a role. A number or a
 * string, not a `Person`: triage asks this of nearly every row it reads.
 */
function onlyRecipient(opportunity: TriageOpportunity, step: Step): number | string | undefined {
  switch (step.to.kind) {
    case 'primary': {
      const id = opportunity.primaryContactId;
      // An id beyond 2^53 stays a string (`parseInt8`), which would match as an address: left to `evaluate`.
      return id === null ? NOBODY : typeof id === 'number' ? id : undefined;
    }
    case 'owner':
      return normalizeEmail(opportunity.ownerEmail);
    case 'role':
      return undefined;
  }
}

const NOBODY = '';
