/**
 * Tests for src/journey/time.ts. Every expected instant below was computed by hand from the IANA
 * rules of the zone (offset in force at that wall time), never by the code under test or by another
 * date library. Each row carries a comment with the offset used.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  addDays,
  addMonths,
  daysBetween,
  isValidTimeZone,
  localDate,
  offsetMinutes,
  parseDuration,
  parseLocalTime,
  weekday,
  zonedTime,
  zonedTimeOrGapEnd,
} from '../../src/journey/time.ts';

type ZonedRow = [zone: string, day: string, time: string, expected: string];

// [zone, local day, local HH:MM, expected UTC instant]
const zonedRows: ZonedRow[] = [
  // --- Europe/Brussels: CET +1 in winter, CEST +2 in summer.
  ['Europe/Brussels', '2026-01-15', '09:00', '2026-01-15T08:00:00.000Z'], // CET +1
  ['Europe/Brussels', '2026-07-15', '09:00', '2026-07-15T07:00:00.000Z'], // CEST +2
  ['Europe/Brussels', '2026-01-15', '00:00', '2026-01-14T23:00:00.000Z'], // CET +1, previous UTC day
  // Spring forward 2026-03-29 02:00 CET -> 03:00 CEST (01:00Z); 02:00-02:59 do not exist.
  ['Europe/Brussels', '2026-03-29', '01:59', '2026-03-29T00:59:00.000Z'], // CET +1, last minute before the gap
  ['Europe/Brussels', '2026-03-29', '02:00', '2026-03-29T01:00:00.000Z'], // gap: moved +1h to 03:00 CEST
  ['Europe/Brussels', '2026-03-29', '02:30', '2026-03-29T01:30:00.000Z'], // gap: moved +1h to 03:30 CEST
  ['Europe/Brussels', '2026-03-29', '03:00', '2026-03-29T01:00:00.000Z'], // CEST +2, first minute after
  ['Europe/Brussels', '2026-03-29', '09:00', '2026-03-29T07:00:00.000Z'], // CEST +2
  ['Europe/Brussels', '2026-03-28', '09:00', '2026-03-28T08:00:00.000Z'], // CET +1, day before
  // Fall back 2026-10-25 03:00 CEST -> 02:00 CET (01:00Z); 02:00-02:59 happen twice.
  ['Europe/Brussels', '2026-10-25', '01:30', '2026-10-24T23:30:00.000Z'], // CEST +2, previous UTC day
  ['Europe/Brussels', '2026-10-25', '02:00', '2026-10-25T00:00:00.000Z'], // overlap: earlier, CEST +2
  ['Europe/Brussels', '2026-10-25', '02:30', '2026-10-25T00:30:00.000Z'], // overlap: earlier, CEST +2 (not 01:30Z)
  ['Europe/Brussels', '2026-10-25', '03:00', '2026-10-25T02:00:00.000Z'], // CET +1 (03:00 CEST never shows)
  ['Europe/Brussels', '2026-10-25', '03:30', '2026-10-25T02:30:00.000Z'], // CET +1
  ['Europe/Brussels', '2026-10-25', '09:00', '2026-10-25T08:00:00.000Z'], // CET +1
  ['Europe/Brussels', '2026-10-24', '09:00', '2026-10-24T07:00:00.000Z'], // CEST +2, day before

  // --- America/New_York: EST -5, EDT -4.
  // Spring forward 2026-03-08 02:00 EST -> 03:00 EDT (07:00Z).
  ['America/New_York', '2026-03-08', '01:59', '2026-03-08T06:59:00.000Z'], // EST -5
  ['America/New_York', '2026-03-08', '02:30', '2026-03-08T07:30:00.000Z'], // gap: moved +1h to 03:30 EDT
  ['America/New_York', '2026-03-08', '03:00', '2026-03-08T07:00:00.000Z'], // EDT -4
  ['America/New_York', '2026-03-08', '09:00', '2026-03-08T13:00:00.000Z'], // EDT -4
  ['America/New_York', '2026-03-07', '09:00', '2026-03-07T14:00:00.000Z'], // EST -5, day before
  // Fall back 2026-11-01 02:00 EDT -> 01:00 EST (06:00Z); 01:00-01:59 happen twice.
  ['America/New_York', '2026-11-01', '00:30', '2026-11-01T04:30:00.000Z'], // EDT -4
  ['America/New_York', '2026-11-01', '01:30', '2026-11-01T05:30:00.000Z'], // overlap: earlier, EDT -4 (not 06:30Z)
  ['America/New_York', '2026-11-01', '02:00', '2026-11-01T07:00:00.000Z'], // EST -5 (02:00 EDT never shows)
  ['America/New_York', '2026-11-01', '09:00', '2026-11-01T14:00:00.000Z'], // EST -5
  ['America/New_York', '2026-10-31', '09:00', '2026-10-31T13:00:00.000Z'], // EDT -4, day before
  ['America/New_York', '2026-11-01', '23:30', '2026-11-02T04:30:00.000Z'], // EST -5, next UTC day

  // --- Australia/Sydney: AEST +10, AEDT +11 (southern summer).
  ['Australia/Sydney', '2026-01-15', '09:00', '2026-01-14T22:00:00.000Z'], // AEDT +11
  ['Australia/Sydney', '2026-07-15', '09:00', '2026-07-14T23:00:00.000Z'], // AEST +10
  // DST ends 2026-04-05 03:00 AEDT -> 02:00 AEST (2026-04-04T16:00Z); 02:00-02:59 twice.
  ['Australia/Sydney', '2026-04-04', '09:00', '2026-04-03T22:00:00.000Z'], // AEDT +11
  ['Australia/Sydney', '2026-04-05', '02:30', '2026-04-04T15:30:00.000Z'], // overlap: earlier, AEDT +11
  ['Australia/Sydney', '2026-04-05', '03:00', '2026-04-04T17:00:00.000Z'], // AEST +10
  ['Australia/Sydney', '2026-04-05', '09:00', '2026-04-04T23:00:00.000Z'], // AEST +10
  // DST starts 2026-10-04 02:00 AEST -> 03:00 AEDT (2026-10-03T16:00Z).
  ['Australia/Sydney', '2026-10-04', '01:30', '2026-10-03T15:30:00.000Z'], // AEST +10
  ['Australia/Sydney', '2026-10-04', '02:30', '2026-10-03T16:30:00.000Z'], // gap: moved +1h to 03:30 AEDT
  ['Australia/Sydney', '2026-10-04', '09:00', '2026-10-03T22:00:00.000Z'], // AEDT +11
  ['Australia/Sydney', '2026-10-03', '09:00', '2026-10-02T23:00:00.000Z'], // AEST +10, day before

  // --- Fixed offsets.
  ['Asia/Kolkata', '2026-06-15', '09:00', '2026-06-15T03:30:00.000Z'], // IST +05:30
  ['Asia/Kolkata', '2026-01-15', '09:00', '2026-01-15T03:30:00.000Z'], // IST +05:30, no DST
  ['Asia/Kolkata', '2026-06-15', '00:15', '2026-06-14T18:45:00.000Z'], // IST +05:30, previous UTC day
  ['Asia/Kathmandu', '2026-06-15', '09:00', '2026-06-15T03:15:00.000Z'], // NPT +05:45
  ['Asia/Kathmandu', '2026-06-15', '03:00', '2026-06-14T21:15:00.000Z'], // NPT +05:45, previous UTC day
  ['Pacific/Kiritimati', '2026-06-15', '09:00', '2026-06-14T19:00:00.000Z'], // LINT +14, previous UTC day
  ['Pacific/Kiritimati', '2026-06-15', '14:00', '2026-06-15T00:00:00.000Z'], // LINT +14
  ['Pacific/Pago_Pago', '2026-06-15', '09:00', '2026-06-15T20:00:00.000Z'], // SST -11
  ['Pacific/Pago_Pago', '2026-06-15', '18:00', '2026-06-16T05:00:00.000Z'], // SST -11, next UTC day
  ['UTC', '2026-06-15', '09:00', '2026-06-15T09:00:00.000Z'], // UTC +0
  ['UTC', '2026-03-29', '02:30', '2026-03-29T02:30:00.000Z'], // UTC +0, no gap
  ['UTC', '2026-10-25', '02:30', '2026-10-25T02:30:00.000Z'], // UTC +0, no overlap

  // --- Australia/Lord_Howe: LHST +10:30, LHDT +11 (a 30-minute shift).
  ['Australia/Lord_Howe', '2026-07-15', '09:00', '2026-07-14T22:30:00.000Z'], // +10:30
  ['Australia/Lord_Howe', '2026-01-15', '09:00', '2026-01-14T22:00:00.000Z'], // +11
  // DST starts 2026-10-04 02:00 +10:30 -> 02:30 +11 (2026-10-03T15:30Z).
  ['Australia/Lord_Howe', '2026-10-04', '01:59', '2026-10-03T15:29:00.000Z'], // +10:30
  ['Australia/Lord_Howe', '2026-10-04', '02:15', '2026-10-03T15:45:00.000Z'], // gap: moved +30m to 02:45 +11
  ['Australia/Lord_Howe', '2026-10-04', '02:30', '2026-10-03T15:30:00.000Z'], // +11
  ['Australia/Lord_Howe', '2026-10-04', '09:00', '2026-10-03T22:00:00.000Z'], // +11
  // DST ends 2026-04-05 02:00 +11 -> 01:30 +10:30 (2026-04-04T15:00Z); 01:30-01:59 twice.
  ['Australia/Lord_Howe', '2026-04-05', '01:45', '2026-04-04T14:45:00.000Z'], // overlap: earlier, +11
  ['Australia/Lord_Howe', '2026-04-05', '02:00', '2026-04-04T15:30:00.000Z'], // +10:30
  ['Australia/Lord_Howe', '2026-04-05', '09:00', '2026-04-04T22:30:00.000Z'], // +10:30

  // --- Month ends, year ends and leap days.
  ['Europe/Brussels', '2024-02-29', '09:00', '2024-02-29T08:00:00.000Z'], // CET +1, leap day
  ['Asia/Tokyo', '2024-02-29', '00:30', '2024-02-28T15:30:00.000Z'], // JST +9, previous UTC day
  ['America/New_York', '2028-02-29', '09:00', '2028-02-29T14:00:00.000Z'], // EST -5 (DST 2028 starts Mar 12)
  ['America/Los_Angeles', '2028-02-29', '23:30', '2028-03-01T07:30:00.000Z'], // PST -8, next UTC day = Mar 1
  ['Asia/Tokyo', '2026-12-31', '23:30', '2026-12-31T14:30:00.000Z'], // JST +9, same UTC day
  ['Asia/Tokyo', '2027-01-01', '00:30', '2026-12-31T15:30:00.000Z'], // JST +9, previous UTC day and year
  ['America/Los_Angeles', '2027-01-01', '00:30', '2027-01-01T08:30:00.000Z'], // PST -8
  ['America/Los_Angeles', '2026-12-31', '23:30', '2027-01-01T07:30:00.000Z'], // PST -8, next UTC day and year
  ['Europe/Brussels', '2026-04-30', '23:30', '2026-04-30T21:30:00.000Z'], // CEST +2, month end
];

function hm(text: string): { hour: number; minute: number } {
  const [h, m] = text.split(':').map(Number) as [number, number];
  return { hour: h, minute: m };
}

type ZonedTimeFn = typeof zonedTime;

function checkAll(fn: ZonedTimeFn): void {
  for (const [zone, day, time, expected] of zonedRows) {
    expect(fn(day, hm(time), zone).toISOString(), `${zone} ${day} ${time}`).toBe(expected);
  }
}

describe('zonedTime', () => {
  it.each(zonedRows)('%s %s %s -> %s', (zone, day, time, expected) => {
    expect(zonedTime(day, hm(time), zone).toISOString()).toBe(expected);
  });

  it('returns a fresh Date each call (a cached result cannot be mutated by a caller)', () => {
    const a = zonedTime('2026-01-15', { hour: 9, minute: 0 }, 'Europe/Brussels');
    a.setTime(0);
    expect(zonedTime('2026-01-15', { hour: 9, minute: 0 }, 'Europe/Brussels').toISOString()).toBe(
      '2026-01-15T08:00:00.000Z',
    );
  });

  describe('does not depend on the process time zone', () => {
    const originalTz = process.env.TZ;
    afterEach(() => {
      if (originalTz === undefined) delete process.env.TZ;
      else process.env.TZ = originalTz;
      vi.resetModules();
    });

    // [process TZ, Date#getTimezoneOffset() at 2026-07-15T12:00Z: proves the change took effect]
    it.each([
      ['Pacific/Chatham', -765], // CHAST +12:45 in July -> getTimezoneOffset -765
      ['America/St_Johns', 150], // NDT -2:30 in July -> getTimezoneOffset +150
    ])('TZ=%s', async (tz, tzOffset) => {
      process.env.TZ = tz;
      expect(new Date('2026-07-15T12:00:00Z').getTimezoneOffset()).toBe(tzOffset);
      // A fresh copy of the module, so zonedTime's memo cannot answer from earlier runs.
      vi.resetModules();
      const fresh = await import('../../src/journey/time.ts');
      checkAll(fresh.zonedTime);
      // The already-loaded copy (with its memo) agrees too.
      checkAll(zonedTime);
    });
  });
});

describe('zonedTimeOrGapEnd: the first instant the wall clock shows the time or later', () => {
  // Expected instants read off Python's zoneinfo (and the zones' rules), not this code.
  it.each([
    ['Europe/Brussels', '2027-03-28', '09:00', '2027-03-28T07:00:00.000Z', 'no gap: as zonedTime'],
    ['Europe/Brussels', '2027-03-28', '02:30', '2027-03-28T01:00:00.000Z', 'in the gap: 03:00 CEST, not 03:30'],
    ['Europe/Brussels', '2027-03-28', '02:00', '2027-03-28T01:00:00.000Z', 'the gap\'s first minute'],
    ['Europe/Brussels', '2027-03-28', '03:00', '2027-03-28T01:00:00.000Z', 'the gap\'s end exists'],
    ['Europe/Brussels', '2027-10-31', '02:30', '2027-10-31T00:30:00.000Z', 'fall-back overlap: the earlier, as zonedTime'],
    ['Australia/Lord_Howe', '2027-10-03', '02:15', '2027-10-02T15:30:00.000Z', 'a 30-minute gap: 02:30 +11:00'],
    ['America/Santiago', '2026-09-06', '00:00', '2026-09-06T04:00:00.000Z', 'midnight in the gap: the day starts at 01:00 -03:00'],
  ])('%s %s %s → %s (%s)', (zone, day, time, expected) => {
    expect(zonedTimeOrGapEnd(day, hm(time), zone).toISOString()).toBe(expected);
  });
});

describe('localDate', () => {
  // [instant, zone, expected local calendar day]
  it.each([
    ['2026-06-15T10:30:00Z', 'Pacific/Kiritimati', '2026-06-16'], // +14 -> 06-16 00:30
    ['2026-06-15T10:30:00Z', 'Pacific/Pago_Pago', '2026-06-14'], // -11 -> 06-14 23:30
    ['2026-06-15T10:30:00Z', 'UTC', '2026-06-15'], // +0 -> 06-15 10:30
    ['2026-12-31T10:30:00Z', 'Pacific/Kiritimati', '2027-01-01'], // +14 -> 2027-01-01 00:30
    ['2026-12-31T10:30:00Z', 'Pacific/Pago_Pago', '2026-12-30'], // -11 -> 12-30 23:30
    ['2026-12-31T10:30:00Z', 'UTC', '2026-12-31'], // +0
    ['2024-02-28T23:30:00Z', 'Europe/Brussels', '2024-02-29'], // CET +1 -> 02-29 00:30
    ['2024-03-01T04:30:00Z', 'America/New_York', '2024-02-29'], // EST -5 -> 02-29 23:30
    ['2026-10-24T22:30:00Z', 'Europe/Brussels', '2026-10-25'], // CEST +2 -> 10-25 00:30
    ['2026-10-24T21:59:00Z', 'Europe/Brussels', '2026-10-24'], // CEST +2 -> 10-24 23:59
  ])('%s in %s is %s', (instant, zone, expected) => {
    expect(localDate(new Date(instant), zone)).toBe(expected);
  });
});

describe('offsetMinutes', () => {
  // [instant, zone, expected minutes east of UTC]
  it.each([
    ['2026-01-15T12:00:00Z', 'Europe/Brussels', 60], // CET +1
    ['2026-07-15T12:00:00Z', 'Europe/Brussels', 120], // CEST +2
    ['2026-03-29T00:59:00Z', 'Europe/Brussels', 60], // CET, a minute before spring forward
    ['2026-03-29T01:00:00Z', 'Europe/Brussels', 120], // CEST from 01:00Z
    ['2026-10-25T00:59:00Z', 'Europe/Brussels', 120], // CEST, a minute before fall back
    ['2026-10-25T01:00:00Z', 'Europe/Brussels', 60], // CET from 01:00Z
    ['2026-01-15T12:00:00Z', 'America/New_York', -300], // EST -5
    ['2026-07-15T12:00:00Z', 'America/New_York', -240], // EDT -4
    ['2026-07-15T12:00:00Z', 'Asia/Kolkata', 330], // IST +05:30
    ['2026-07-15T12:00:00Z', 'Asia/Kathmandu', 345], // NPT +05:45
    ['2026-07-15T12:00:00Z', 'Pacific/Kiritimati', 840], // +14
    ['2026-07-15T12:00:00Z', 'Pacific/Pago_Pago', -660], // -11
    ['2026-07-15T12:00:00Z', 'UTC', 0], // +0
    ['2026-01-15T12:00:00Z', 'Australia/Sydney', 660], // AEDT +11
    ['2026-07-15T12:00:00Z', 'Australia/Sydney', 600], // AEST +10
    ['2026-01-15T12:00:00Z', 'Australia/Lord_Howe', 660], // LHDT +11
    ['2026-07-15T12:00:00Z', 'Australia/Lord_Howe', 630], // LHST +10:30
    ['2026-07-15T12:00:00Z', 'Pacific/Chatham', 765], // CHAST +12:45
    ['2026-01-15T12:00:00Z', 'Pacific/Chatham', 825], // CHADT +13:45
    ['2026-01-15T12:00:00Z', 'America/St_Johns', -210], // NST -3:30
    ['2026-07-15T12:00:00Z', 'America/St_Johns', -150], // NDT -2:30
    ['2026-07-15T12:00:30.500Z', 'Europe/Brussels', 120], // seconds/millis do not perturb the result
  ])('%s in %s is %i', (instant, zone, expected) => {
    expect(offsetMinutes(new Date(instant), zone)).toBe(expected);
  });
});

describe('addDays', () => {
  it.each([
    ['2024-02-28', 1, '2024-02-29'], // leap year
    ['2024-02-29', 1, '2024-03-01'],
    ['2025-02-28', 1, '2025-03-01'], // not a leap year
    ['2026-12-31', 1, '2027-01-01'], // year end
    ['2027-01-01', -1, '2026-12-31'],
    ['2026-03-01', -1, '2026-02-28'],
    ['2024-03-01', -1, '2024-02-29'],
    ['2026-01-31', 1, '2026-02-01'],
    ['2026-04-30', 1, '2026-05-01'],
    ['2026-03-28', 1, '2026-03-29'], // the DST day is still one calendar day
    ['2026-10-25', 1, '2026-10-26'],
    ['2026-01-31', 30, '2026-03-02'], // 28 days to Feb 28, +2
    ['2026-01-01', 365, '2027-01-01'],
    ['2024-01-01', 366, '2025-01-01'],
    ['2026-06-15', 0, '2026-06-15'],
    ['2026-03-15', -14, '2026-03-01'],
    ['2026-03-10', -14, '2026-02-24'],
  ])('%s %+i days = %s', (day, n, expected) => {
    expect(addDays(day, n)).toBe(expected);
  });

  it('rejects a malformed day', () => {
    expect(() => addDays('2026-3-1', 1)).toThrow(RangeError);
  });
});

describe('addMonths', () => {
  it.each([
    ['2026-01-31', 1, '2026-02-28'], // clamp, non-leap
    ['2024-01-31', 1, '2024-02-29'], // clamp, leap
    ['2026-11-30', 3, '2027-02-28'], // across the year, clamp
    ['2026-03-31', -1, '2026-02-28'],
    ['2024-03-31', -1, '2024-02-29'],
    ['2026-05-31', 1, '2026-06-30'], // 30-day month
    ['2026-01-15', 1, '2026-02-15'],
    ['2026-12-15', 1, '2027-01-15'],
    ['2026-01-10', -1, '2025-12-10'],
    ['2026-01-15', 12, '2027-01-15'],
    ['2024-02-29', 12, '2025-02-28'], // leap day + 1 year
    ['2024-02-29', 48, '2028-02-29'], // next leap year
    ['2026-08-31', 0, '2026-08-31'],
  ])('%s %+i months = %s', (day, n, expected) => {
    expect(addMonths(day, n)).toBe(expected);
  });
});

describe('weekday', () => {
  it.each([
    ['2026-11-27', 5], // Friday
    ['1970-01-01', 4], // Thursday (day 0)
    ['1969-12-31', 3], // Wednesday (negative day number)
    ['2024-02-29', 4], // Thursday
    ['2026-03-29', 0], // Sunday
    ['2026-10-31', 6], // Saturday
    ['2026-11-30', 1], // Monday
    ['2027-01-01', 5], // Friday
  ])('%s is %i', (day, expected) => {
    expect(weekday(day)).toBe(expected);
  });
});

describe('daysBetween', () => {
  it.each([
    ['2026-01-01', '2027-01-01', 365],
    ['2024-01-01', '2025-01-01', 366],
    ['2026-02-28', '2026-03-01', 1],
    ['2024-02-28', '2024-03-01', 2],
    ['2026-03-29', '2026-03-28', -1],
    ['2026-03-28', '2026-03-30', 2], // across spring forward: whole calendar days
    ['2026-10-24', '2026-10-26', 2], // across fall back
    ['2026-06-15', '2026-06-15', 0],
    ['2026-12-31', '2026-11-30', -31],
  ])('%s -> %s = %i', (a, b, expected) => {
    expect(daysBetween(a, b)).toBe(expected);
  });
});

describe('parseDuration', () => {
  it.each([
    ['15m', 15],
    ['24h', 1440],
    ['2d', 2880],
    ['0m', 0],
    ['90m', 90],
    ['1h', 60],
    ['7d', 10080],
  ])('%s = %i minutes', (text, expected) => {
    expect(parseDuration(text)).toBe(expected);
  });

  it.each(['2', 'h', '1.5h', '-1d', '2w', '', ' 2d', '2d ', '2 d', '2D', '+2d', 'd2'])(
    '%j is malformed',
    (text) => {
      expect(parseDuration(text)).toBeNull();
    },
  );
});

describe('parseLocalTime', () => {
  it.each([
    ['09:00', 9, 0],
    ['00:00', 0, 0],
    ['23:59', 23, 59],
    ['19:30', 19, 30],
  ])('%s', (text, hour, minute) => {
    expect(parseLocalTime(text)).toEqual({ hour, minute });
  });

  it.each(['9:00', '24:00', '12:60', '', '09:00:00', '0900', '09:5', 'ab:cd', ' 09:00', '09:00 '])(
    '%j is malformed',
    (text) => {
      expect(parseLocalTime(text)).toBeNull();
    },
  );
});

describe('isValidTimeZone', () => {
  it.each([
    ['Europe/Brussels', true],
    ['America/New_York', true],
    ['Australia/Lord_Howe', true],
    ['UTC', true],
    ['Mars/Olympus', false],
    ['', false],
    ['Europe/Brusels', false],
    ['Not a zone', false],
  ])('%j -> %s', (zone, expected) => {
    expect(isValidTimeZone(zone)).toBe(expected);
    // Second call answers from the memo; must agree.
    expect(isValidTimeZone(zone)).toBe(expected);
  });
});
