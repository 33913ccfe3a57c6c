/** When a step falls due for one recipient: pure functions of the opportunity's rows and a zone. */
import { remember } from '../memo.ts';
import {
  addDays, localDate, localMinuteOfDay, weekday, zonedTime, zonedTimeOrGapEnd,
} from './time.ts';
import type { IsoDate, Opportunity, QuietHours, Step, Timing } from './types.ts';

export interface DueTime {
  /** The due instant, after quiet hours and weekends moved it. */
  dueAt: Date;
  /** The end of the window: after this the step is expired. */
  windowEndsAt: Date;
  /** The local calendar day the step was computed for. */
  day: IsoDate;
}

const MINUTE = 60_000;

/** What a due time is computed from. */
export type DueOpportunity = Pick<Opportunity, 'closingDate' | 'stage' | 'stageEnteredAt'>;

/**
 * The due time of `step` for a recipient in `zone`, or null when its trigger does not apply. The
 * result is shared between calls (a scan asks for the same closing dates in the same zones over
 * and over): it must not be changed.
 */
export function dueTime(opportunity: DueOpportunity, step: Step, zone: string): DueTime | null {
  const { trigger, timing } = step;
  let day: IsoDate;
  let at: Date;
  if (trigger.kind === 'closingDate') {
    if (opportunity.closingDate === null) return null;
    const memo = memoOf(closingDueTimes, timing);
    const key = `${zone}|${opportunity.closingDate}|${trigger.offsetDays}`;
    let due = memo.get(key);
    if (due === undefined) {
      day = addDays(opportunity.closingDate, trigger.offsetDays);
      at = zonedTime(day, timing.sendAt, zone);
      const dueAt = nextAllowed(at, zone, timing);
      due = { dueAt, windowEndsAt: new Date(dueAt.getTime() + timing.windowMinutes * MINUTE), day };
      remember(memo, key, due, MEMO_LIMIT);
    }
    return due;
  } else {
    if (opportunity.stage.key !== trigger.stage) return null;
    day = addDays(localDate(opportunity.stageEnteredAt, zone), trigger.daysAfter);
    at = zonedTime(day, timing.sendAt, zone);
    // Entered after sendAt on the same day: due as soon as it was entered, not a day later.
    if (trigger.daysAfter === 0 && opportunity.stageEnteredAt > at) at = opportunity.stageEnteredAt;
  }
  const dueAt = nextAllowed(at, zone, timing);
  return { dueAt, windowEndsAt: new Date(dueAt.getTime() + timing.windowMinutes * MINUTE), day };
}

/** The first instant at or after `at` outside quiet hours and (when skipped) weekends. */
export function nextAllowed(at: Date, zone: string, timing: Pick<Timing, 'quietHours' | 'skipWeekends'>): Date {
  if (!timing.quietHours && !timing.skipWeekends) return at;
  const memo = memoOf(allowedTimes, timing);
  const key = `${zone}|${at.getTime()}`;
  let allowed = memo.get(key);
  if (allowed === undefined) {
    allowed = firstAllowed(at, zone, timing);
    remember(memo, key, allowed, MEMO_LIMIT);
  }
  return new Date(allowed.getTime());
}

// Per timing object (a step's, or the defaults'): recent answers, bounded.
const closingDueTimes = new WeakMap<object, Map<string, DueTime>>();
const allowedTimes = new WeakMap<object, Map<string, Date>>();
const MEMO_LIMIT = 20_000;

function memoOf<V>(memos: WeakMap<object, Map<string, V>>, timing: object): Map<string, V> {
  let memo = memos.get(timing);
  if (!memo) {
    memo = new Map();
    memos.set(timing, memo);
  }
  return memo;
}

function firstAllowed(at: Date, zone: string, timing: Pick<Timing, 'quietHours' | 'skipWeekends'>): Date {
  let t = at;
  // Each move lands on a boundary; a handful of moves reaches a stable instant in any zone.
  for (let i = 0; i < 8; i++) {
    const day = localDate(t, zone);
    if (timing.skipWeekends && (weekday(day) === 0 || weekday(day) === 6)) {
      t = zonedTimeOrGapEnd(addDays(day, weekday(day) === 6 ? 2 : 1), { hour: 0, minute: 0 }, zone);
      continue;
    }
    const end = timing.quietHours ? quietEnd(t, day, zone, timing.quietHours) : null;
    if (end === null) return t;
    t = end;
  }
  return t;
}

/** When `t` is inside quiet hours, the instant they end; else null. */
function quietEnd(t: Date, day: IsoDate, zone: string, quiet: QuietHours): Date | null {
  const m = localMinuteOfDay(t, zone);
  const from = quiet.from.hour * 60 + quiet.from.minute;
  const to = quiet.to.hour * 60 + quiet.to.minute;
  // They end when the clock shows `to`: in a spring-forward gap over it, when the clock jumps.
  if (from < to) return m >= from && m < to ? zonedTimeOrGapEnd(day, quiet.to, zone) : null;
  if (m >= from) return zonedTimeOrGapEnd(addDays(day, 1), quiet.to, zone);
  if (m < to) return zonedTimeOrGapEnd(day, quiet.to, zone);
  return null;
}
