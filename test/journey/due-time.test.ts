/**
 * Tests for src/journey/due-time.ts (SPEC section 3, "Timing").
 *
 * Every expected instant was computed by hand from the zone's rules, never by the code under test
 * or by another date library. Offsets used (2026–2028):
 * - Europe/Brussels: CET +1, CEST +2 from last Sunday of March 02:00 (2026-03-29) to last Sunday
 *   of October 03:00 (2026-10-25). 09:00 CET = 08:00Z, 09:00 CEST = 07:00Z.
 * - America/New_York: EST -5, EDT -4 from second Sunday of March 02:00 (2026-03-08) to first
 *   Sunday of November 02:00 (2026-11-01). 09:00 EST = 14:00Z, 09:00 EDT = 13:00Z.
 * - Asia/Tokyo: JST +9, no DST. 09:00 = 00:00Z the same day.
 * - Pacific/Kiritimati: +14, no DST. 09:00 = 19:00Z the previous day.
 * Weekdays: 2026-06-12 Fri, 06-13 Sat, 06-14 Sun, 06-15 Mon; 2026-01-17 Sat; 2026-03-28 Sat.
 */
import { describe, expect, it } from 'vitest';
import { dueTime, nextAllowed } from '../../src/journey/due-time.ts';
import {
  at, DAY, daysAfter, daysBefore, HOUR, hm, opportunity, stageEntered, type TimingInput,
} from '../helpers/journey-builders.ts';

function due(closingDate: string, offsetDays: number, zone: string, t: TimingInput = {}) {
  const step = offsetDays <= 0 ? daysBefore('s', -offsetDays, { timing: t }) : daysAfter('s', offsetDays, { timing: t });
  const d = dueTime(opportunity({ closingDate }), step, zone);
  return d && { dueAt: d.dueAt.toISOString(), windowEndsAt: d.windowEndsAt.toISOString(), day: d.day };
}

describe('dueTime: closingDate steps at sendAt 09:00 local on closing date ∓ N days', () => {
  type Row = [zone: string, closing: string, offset: number, day: string, expected: string];
  const rows: Row[] = [
    // Brussels, summer (CEST +2).
    ['Europe/Brussels', '2026-06-20', -14, '2026-06-06', '2026-06-06T07:00:00.000Z'],
    ['Europe/Brussels', '2026-06-20', -7, '2026-06-13', '2026-06-13T07:00:00.000Z'],
    ['Europe/Brussels', '2026-06-20', -3, '2026-06-17', '2026-06-17T07:00:00.000Z'],
    ['Europe/Brussels', '2026-06-20', 0, '2026-06-20', '2026-06-20T07:00:00.000Z'],
    ['Europe/Brussels', '2026-06-20', 1, '2026-06-21', '2026-06-21T07:00:00.000Z'],
    // Brussels, winter (CET +1).
    ['Europe/Brussels', '2026-01-15', -14, '2026-01-01', '2026-01-01T08:00:00.000Z'],
    ['Europe/Brussels', '2026-01-15', -7, '2026-01-08', '2026-01-08T08:00:00.000Z'],
    ['Europe/Brussels', '2026-01-15', -3, '2026-01-12', '2026-01-12T08:00:00.000Z'],
    ['Europe/Brussels', '2026-01-15', 0, '2026-01-15', '2026-01-15T08:00:00.000Z'],
    ['Europe/Brussels', '2026-01-15', 1, '2026-01-16', '2026-01-16T08:00:00.000Z'],
    // New York, summer (EDT -4).
    ['America/New_York', '2026-06-20', -14, '2026-06-06', '2026-06-06T13:00:00.000Z'],
    ['America/New_York', '2026-06-20', -7, '2026-06-13', '2026-06-13T13:00:00.000Z'],
    ['America/New_York', '2026-06-20', -3, '2026-06-17', '2026-06-17T13:00:00.000Z'],
    ['America/New_York', '2026-06-20', 0, '2026-06-20', '2026-06-20T13:00:00.000Z'],
    ['America/New_York', '2026-06-20', 1, '2026-06-21', '2026-06-21T13:00:00.000Z'],
    // New York, winter (EST -5).
    ['America/New_York', '2026-01-15', -14, '2026-01-01', '2026-01-01T14:00:00.000Z'],
    ['America/New_York', '2026-01-15', 0, '2026-01-15', '2026-01-15T14:00:00.000Z'],
    // Tokyo (+9): 09:00 local is midnight UTC of the same day.
    ['Asia/Tokyo', '2026-06-20', -14, '2026-06-06', '2026-06-06T00:00:00.000Z'],
    ['Asia/Tokyo', '2026-06-20', -7, '2026-06-13', '2026-06-13T00:00:00.000Z'],
    ['Asia/Tokyo', '2026-06-20', -3, '2026-06-17', '2026-06-17T00:00:00.000Z'],
    ['Asia/Tokyo', '2026-06-20', 0, '2026-06-20', '2026-06-20T00:00:00.000Z'],
    ['Asia/Tokyo', '2026-06-20', 1, '2026-06-21', '2026-06-21T00:00:00.000Z'],
    // Kiritimati (+14): 09:00 local is 19:00 UTC of the previous day.
    ['Pacific/Kiritimati', '2026-06-20', -14, '2026-06-06', '2026-06-05T19:00:00.000Z'],
    ['Pacific/Kiritimati', '2026-06-20', -7, '2026-06-13', '2026-06-12T19:00:00.000Z'],
    ['Pacific/Kiritimati', '2026-06-20', -3, '2026-06-17', '2026-06-16T19:00:00.000Z'],
    ['Pacific/Kiritimati', '2026-06-20', 0, '2026-06-20', '2026-06-19T19:00:00.000Z'],
    ['Pacific/Kiritimati', '2026-06-20', 1, '2026-06-21', '2026-06-20T19:00:00.000Z'],
  ];
  it.each(rows)('%s closing %s offset %i → %s at %s', (zone, closing, offset, day, expected) => {
    expect(due(closing, offset, zone)).toMatchObject({ day, dueAt: expected });
  });
});

describe('dueTime: the due day crossing a daylight-saving change keeps 09:00 local', () => {
  type Row = [zone: string, closing: string, offset: number, day: string, expected: string, note: string];
  const rows: Row[] = [
    ['Europe/Brussels', '2026-04-01', -3, '2026-03-29', '2026-03-29T07:00:00.000Z', 'spring-forward day itself, CEST +2'],
    ['Europe/Brussels', '2026-04-05', -14, '2026-03-22', '2026-03-22T08:00:00.000Z', 'before the change, CET +1'],
    ['Europe/Brussels', '2026-04-05', -7, '2026-03-29', '2026-03-29T07:00:00.000Z', 'change day, CEST +2'],
    ['Europe/Brussels', '2026-04-05', -3, '2026-04-02', '2026-04-02T07:00:00.000Z', 'after the change, CEST +2'],
    ['Europe/Brussels', '2026-03-31', -3, '2026-03-28', '2026-03-28T08:00:00.000Z', 'day before the change, CET +1'],
    ['Europe/Brussels', '2026-10-28', -3, '2026-10-25', '2026-10-25T08:00:00.000Z', 'fall-back day, CET +1 at 09:00'],
    ['Europe/Brussels', '2026-10-28', -7, '2026-10-21', '2026-10-21T07:00:00.000Z', 'before fall-back, CEST +2'],
    ['America/New_York', '2026-11-03', -2, '2026-11-01', '2026-11-01T14:00:00.000Z', 'fall-back day, EST -5 at 09:00'],
    ['America/New_York', '2026-11-03', -3, '2026-10-31', '2026-10-31T13:00:00.000Z', 'day before fall-back, EDT -4'],
    ['America/New_York', '2026-03-11', -3, '2026-03-08', '2026-03-08T13:00:00.000Z', 'spring-forward day, EDT -4 at 09:00'],
    ['America/New_York', '2026-03-11', -7, '2026-03-04', '2026-03-04T14:00:00.000Z', 'before spring-forward, EST -5'],
  ];
  it.each(rows)('%s closing %s offset %i → %s %s (%s)', (zone, closing, offset, day, expected) => {
    expect(due(closing, offset, zone)).toMatchObject({ day, dueAt: expected });
  });
});

describe('dueTime: month ends, year ends and 29 February', () => {
  type Row = [zone: string, closing: string, offset: number, day: string, expected: string];
  const rows: Row[] = [
    ['Europe/Brussels', '2026-01-10', -14, '2025-12-27', '2025-12-27T08:00:00.000Z'], // previous year, CET
    ['America/New_York', '2027-01-02', -3, '2026-12-30', '2026-12-30T14:00:00.000Z'], // previous year, EST
    ['Pacific/Kiritimati', '2027-01-01', 0, '2027-01-01', '2026-12-31T19:00:00.000Z'], // UTC instant in previous year
    ['Asia/Tokyo', '2026-12-31', 1, '2027-01-01', '2027-01-01T00:00:00.000Z'], // daysAfter into next year
    ['Europe/Brussels', '2026-05-02', -3, '2026-04-29', '2026-04-29T07:00:00.000Z'], // 30-day April, CEST
    ['Pacific/Kiritimati', '2026-04-30', 1, '2026-05-01', '2026-04-30T19:00:00.000Z'], // daysAfter into May, +14
    ['America/New_York', '2026-03-03', -3, '2026-02-28', '2026-02-28T14:00:00.000Z'], // 2026: no 29 Feb
    ['America/New_York', '2027-03-03', -3, '2027-02-28', '2027-02-28T14:00:00.000Z'], // 2027: no 29 Feb
    ['Asia/Tokyo', '2028-03-03', -3, '2028-02-29', '2028-02-29T00:00:00.000Z'], // leap day
    ['Europe/Brussels', '2028-03-14', -14, '2028-02-29', '2028-02-29T08:00:00.000Z'], // leap day, CET
    ['Europe/Brussels', '2028-03-07', -7, '2028-02-29', '2028-02-29T08:00:00.000Z'], // leap day, CET
    ['America/New_York', '2028-02-29', 1, '2028-03-01', '2028-03-01T14:00:00.000Z'], // after leap day, EST
    ['Pacific/Kiritimati', '2028-02-29', 0, '2028-02-29', '2028-02-28T19:00:00.000Z'], // leap day, +14
  ];
  it.each(rows)('%s closing %s offset %i → %s at %s', (zone, closing, offset, day, expected) => {
    expect(due(closing, offset, zone)).toMatchObject({ day, dueAt: expected });
  });
});

describe('dueTime: sendAt inside a spring-forward gap moves forward, inside an overlap takes the earlier instant', () => {
  type Row = [zone: string, closing: string, offset: number, sendAt: string, expected: string, note: string];
  const rows: Row[] = [
    ['Europe/Brussels', '2026-04-01', -3, '02:30', '2026-03-29T01:30:00.000Z', '02:30 does not exist → 03:30 CEST'],
    ['Europe/Brussels', '2026-04-01', -3, '02:00', '2026-03-29T01:00:00.000Z', '02:00 does not exist → 03:00 CEST'],
    ['Europe/Brussels', '2026-04-01', -3, '03:00', '2026-03-29T01:00:00.000Z', '03:00 CEST'],
    ['America/New_York', '2026-03-11', -3, '02:30', '2026-03-08T07:30:00.000Z', '02:30 does not exist → 03:30 EDT'],
    ['Europe/Brussels', '2026-10-28', -3, '02:30', '2026-10-25T00:30:00.000Z', 'overlap: earlier, 02:30 CEST'],
    ['America/New_York', '2026-11-04', -3, '01:30', '2026-11-01T05:30:00.000Z', 'overlap: earlier, 01:30 EDT'],
  ];
  it.each(rows)('%s closing %s offset %i sendAt %s → %s (%s)', (zone, closing, offset, sendAt, expected) => {
    expect(due(closing, offset, zone, { sendAt })?.dueAt).toBe(expected);
  });
});

describe('dueTime: the window ends windowMinutes after the (moved) due time', () => {
  type Row = [zone: string, closing: string, offset: number, t: TimingInput, dueAt: string, windowEndsAt: string, note: string];
  const rows: Row[] = [
    ['Europe/Brussels', '2026-06-20', -3, {}, '2026-06-17T07:00:00.000Z', '2026-06-18T07:00:00.000Z', 'default 24h'],
    ['Europe/Brussels', '2026-06-20', -3, { windowMinutes: 90 }, '2026-06-17T07:00:00.000Z', '2026-06-17T08:30:00.000Z', '90m'],
    ['Europe/Brussels', '2026-06-20', -3, { windowMinutes: 10 * DAY }, '2026-06-17T07:00:00.000Z', '2026-06-27T07:00:00.000Z', '10d'],
    // Elapsed time: 24h after 09:00 CET on 28 March is 10:00 CEST on 29 March.
    ['Europe/Brussels', '2026-03-31', -3, {}, '2026-03-28T08:00:00.000Z', '2026-03-29T08:00:00.000Z', '24h across spring-forward'],
    ['Europe/Brussels', '2026-04-01', -3, { sendAt: '02:30', windowMinutes: HOUR }, '2026-03-29T01:30:00.000Z', '2026-03-29T02:30:00.000Z', 'gap-moved due + 1h'],
    // sendAt 21:00 falls in quiet hours 20:00→08:00: due moves to 08:00 CEST next day; window from there.
    ['Europe/Brussels', '2026-06-20', -3, { sendAt: '21:00', quietHours: ['20:00', '08:00'], windowMinutes: HOUR }, '2026-06-18T06:00:00.000Z', '2026-06-18T07:00:00.000Z', 'quiet-moved due + 1h'],
    // 2026-06-13 is a Saturday: moved to Monday 2026-06-15 00:00 CEST, or 08:00 CEST with quiet hours.
    ['Europe/Brussels', '2026-06-16', -3, { skipWeekends: true }, '2026-06-14T22:00:00.000Z', '2026-06-15T22:00:00.000Z', 'weekend-moved due + 24h'],
    ['Europe/Brussels', '2026-06-16', -3, { skipWeekends: true, quietHours: ['20:00', '08:00'] }, '2026-06-15T06:00:00.000Z', '2026-06-16T06:00:00.000Z', 'weekend+quiet-moved due + 24h'],
    ['Asia/Tokyo', '2026-06-20', 0, { windowMinutes: 12 * HOUR }, '2026-06-20T00:00:00.000Z', '2026-06-20T12:00:00.000Z', '12h'],
  ];
  it.each(rows)('%s closing %s offset %i %j → due %s, window ends %s (%s)', (zone, closing, offset, t, dueAt, windowEndsAt) => {
    expect(due(closing, offset, zone, t)).toMatchObject({ dueAt, windowEndsAt });
  });

  it('is null when the opportunity has no closing date', () => {
    expect(dueTime(opportunity({ closingDate: null }), daysBefore('s', 3), 'Europe/Brussels')).toBeNull();
  });
});

describe('dueTime: stageEntered steps', () => {
  type Row = [zone: string, enteredAt: string, n: number, t: TimingInput, day: string, expected: string, note: string];
  const rows: Row[] = [
    ['Europe/Brussels', '2026-06-10T15:00:00Z', 2, {}, '2026-06-12', '2026-06-12T07:00:00.000Z', 'entered 17:00 CEST, +2 days at 09:00 CEST'],
    ['Europe/Brussels', '2026-06-10T10:17:00Z', 0, {}, '2026-06-10', '2026-06-10T10:17:00.000Z', 'N=0 entered 12:17 CEST after sendAt: due when entered'],
    ['Europe/Brussels', '2026-06-10T05:00:00Z', 0, {}, '2026-06-10', '2026-06-10T07:00:00.000Z', 'N=0 entered 07:00 CEST before sendAt: sendAt that day'],
    ['Europe/Brussels', '2026-06-10T07:00:00Z', 0, {}, '2026-06-10', '2026-06-10T07:00:00.000Z', 'N=0 entered exactly at 09:00 CEST'],
    ['Europe/Brussels', '2026-06-10T15:00:00Z', 1, {}, '2026-06-11', '2026-06-11T07:00:00.000Z', 'N=1: next day at sendAt, not 24h later'],
    // 20:00Z on 10 June is 05:00 JST on 11 June: the local day is the 11th, not the UTC 10th.
    ['Asia/Tokyo', '2026-06-10T20:00:00Z', 2, {}, '2026-06-13', '2026-06-13T00:00:00.000Z', 'Tokyo local day 11 June + 2'],
    ['Asia/Tokyo', '2026-06-10T20:00:00Z', 0, {}, '2026-06-11', '2026-06-11T00:00:00.000Z', 'N=0, 05:00 JST is before sendAt (though after 09:00 UTC)'],
    ['Asia/Tokyo', '2026-06-10T01:30:00Z', 0, {}, '2026-06-10', '2026-06-10T01:30:00.000Z', 'N=0, 10:30 JST is after sendAt (though before 09:00 UTC)'],
    ['America/New_York', '2026-06-11T02:00:00Z', 1, {}, '2026-06-11', '2026-06-11T13:00:00.000Z', '22:00 EDT on 10 June + 1 day'],
    ['Pacific/Kiritimati', '2026-06-10T11:00:00Z', 1, {}, '2026-06-12', '2026-06-11T19:00:00.000Z', '01:00 on 11 June (+14) + 1 day'],
    ['Europe/Brussels', '2026-03-27T12:00:00Z', 2, {}, '2026-03-29', '2026-03-29T07:00:00.000Z', 'entered 13:00 CET, due on spring-forward day 09:00 CEST'],
    ['Europe/Brussels', '2026-06-10T19:00:00Z', 0, { quietHours: ['20:00', '08:00'] }, '2026-06-10', '2026-06-11T06:00:00.000Z', 'N=0 entered 21:00 CEST in quiet hours: 08:00 CEST next day'],
    ['Europe/Brussels', '2026-06-10T15:00:00Z', 2, { sendAt: '14:30' }, '2026-06-12', '2026-06-12T12:30:00.000Z', 'custom sendAt 14:30 CEST'],
  ];
  it.each(rows)('%s entered %s daysAfter %i %j → %s at %s (%s)', (zone, enteredAt, n, t, day, expected) => {
    const opp = opportunity({ stage: 'proposal', stageEnteredAt: at(enteredAt) });
    const d = dueTime(opp, stageEntered('s', 'proposal', n, { timing: t }), zone);
    expect(d && { day: d.day, dueAt: d.dueAt.toISOString() }).toEqual({ day, dueAt: expected });
  });

  it('is null when the opportunity is not in the step\'s stage', () => {
    const opp = opportunity({ stage: 'negotiation', stageEnteredAt: at('2026-06-10T15:00:00Z') });
    expect(dueTime(opp, stageEntered('s', 'proposal', 2), 'Europe/Brussels')).toBeNull();
  });
});

describe('nextAllowed in Europe/Brussels', () => {
  type Row = [at: string, quiet: [string, string] | null, skipWeekends: boolean, expected: string, note: string];
  const NIGHT: [string, string] = ['20:00', '08:00'];
  const LUNCH: [string, string] = ['12:00', '14:00'];
  const rows: Row[] = [
    // Quiet hours 20:00 → 08:00, wrapping midnight.
    ['2026-06-10T17:59:00Z', NIGHT, false, '2026-06-10T17:59:00.000Z', '19:59 CEST: allowed'],
    ['2026-06-10T18:00:00Z', NIGHT, false, '2026-06-11T06:00:00.000Z', '20:00 CEST: quiet until 08:00 next day'],
    ['2026-06-10T18:30:00Z', NIGHT, false, '2026-06-11T06:00:00.000Z', '20:30 CEST'],
    ['2026-06-10T22:30:00Z', NIGHT, false, '2026-06-11T06:00:00.000Z', '00:30 CEST after midnight'],
    ['2026-06-11T05:59:00Z', NIGHT, false, '2026-06-11T06:00:00.000Z', '07:59 CEST'],
    ['2026-06-11T06:00:00Z', NIGHT, false, '2026-06-11T06:00:00.000Z', '08:00 CEST: quiet hours over'],
    ['2026-01-15T20:00:00Z', NIGHT, false, '2026-01-16T07:00:00.000Z', '21:00 CET → 08:00 CET'],
    ['2026-03-28T20:00:00Z', NIGHT, false, '2026-03-29T06:00:00.000Z', '21:00 CET → 08:00 CEST (spring-forward night)'],
    ['2026-10-24T19:00:00Z', NIGHT, false, '2026-10-25T07:00:00.000Z', '21:00 CEST → 08:00 CET (fall-back night)'],
    // Quiet hours 12:00 → 14:00, inside one day.
    ['2026-06-10T09:59:00Z', LUNCH, false, '2026-06-10T09:59:00.000Z', '11:59 CEST: allowed'],
    ['2026-06-10T10:00:00Z', LUNCH, false, '2026-06-10T12:00:00.000Z', '12:00 CEST → 14:00 CEST'],
    ['2026-06-10T11:30:00Z', LUNCH, false, '2026-06-10T12:00:00.000Z', '13:30 CEST → 14:00 CEST'],
    ['2026-06-10T12:00:00Z', LUNCH, false, '2026-06-10T12:00:00.000Z', '14:00 CEST: allowed'],
    ['2026-06-10T20:00:00Z', LUNCH, false, '2026-06-10T20:00:00.000Z', '22:00 CEST: allowed'],
    ['2026-06-10T23:00:00Z', LUNCH, false, '2026-06-10T23:00:00.000Z', '01:00 CEST: allowed'],
    // Weekends, no quiet hours: Monday 00:00 local.
    ['2026-06-13T08:00:00Z', null, true, '2026-06-14T22:00:00.000Z', 'Saturday 10:00 CEST → Monday 00:00 CEST'],
    ['2026-06-14T21:30:00Z', null, true, '2026-06-14T22:00:00.000Z', 'Sunday 23:30 CEST → Monday 00:00 CEST'],
    ['2026-06-12T21:30:00Z', null, true, '2026-06-12T21:30:00.000Z', 'Friday 23:30 CEST: allowed'],
    ['2026-06-12T22:30:00Z', null, true, '2026-06-14T22:00:00.000Z', 'Saturday 00:30 CEST (still Friday in UTC)'],
    ['2026-06-14T22:00:00Z', null, true, '2026-06-14T22:00:00.000Z', 'Monday 00:00 CEST: allowed'],
    ['2026-01-17T09:00:00Z', null, true, '2026-01-18T23:00:00.000Z', 'Saturday 10:00 CET → Monday 00:00 CET'],
    ['2026-03-28T09:00:00Z', null, true, '2026-03-29T22:00:00.000Z', 'Saturday 10:00 CET → Monday 00:00 CEST'],
    ['2026-06-13T08:00:00Z', null, false, '2026-06-13T08:00:00.000Z', 'Saturday allowed without skipWeekends'],
    // Weekends and quiet hours together.
    ['2026-06-13T08:00:00Z', NIGHT, true, '2026-06-15T06:00:00.000Z', 'Saturday 10:00 → Monday 08:00 CEST'],
    ['2026-06-12T19:00:00Z', NIGHT, true, '2026-06-15T06:00:00.000Z', 'Friday 21:00 → Saturday 08:00 is weekend → Monday 08:00'],
    ['2026-06-12T19:00:00Z', NIGHT, false, '2026-06-13T06:00:00.000Z', 'Friday 21:00 → Saturday 08:00 without skipWeekends'],
    ['2026-06-15T05:00:00Z', NIGHT, true, '2026-06-15T06:00:00.000Z', 'Monday 07:00 → 08:00'],
    ['2026-06-13T08:00:00Z', LUNCH, true, '2026-06-14T22:00:00.000Z', 'Saturday → Monday 00:00 (lunch quiet hours not in the way)'],
    ['2026-06-10T08:00:00Z', null, false, '2026-06-10T08:00:00.000Z', 'no rules: unchanged'],
    // Quiet hours ending inside the spring-forward gap (02:00-02:59 of 2026-03-29 do not exist):
    // over when the clock jumps to 03:00 CEST (01:00Z), not at 03:30 (02:30 moved by the gap).
    ['2026-03-28T22:00:00Z', ['22:00', '02:30'], false, '2026-03-29T01:00:00.000Z', '23:00 CET → 03:00 CEST, the first minute after 02:30'],
    ['2026-03-29T00:30:00Z', ['22:00', '02:30'], false, '2026-03-29T01:00:00.000Z', '01:30 CET → 03:00 CEST'],
    ['2026-03-29T00:30:00Z', ['01:00', '02:00'], false, '2026-03-29T01:00:00.000Z', 'ending at 02:00, the gap\'s first minute → 03:00 CEST'],
  ];
  it.each(rows)('%s quiet %j skipWeekends %s → %s (%s)', (instant, quiet, skipWeekends, expected) => {
    const quietHours = quiet ? { from: hm(quiet[0]), to: hm(quiet[1]) } : null;
    expect(nextAllowed(at(instant), 'Europe/Brussels', { quietHours, skipWeekends }).toISOString()).toBe(expected);
  });
});
