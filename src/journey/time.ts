/**
 * Calendar days and wall-clock times in IANA time zones, with no dependency on the process's own
 * `TZ` or locale. Days are `YYYY-MM-DD` strings; instants are `Date`s. Built on `Intl`, whose
 * time-zone data ships with Node.
 */
import { remember } from '../memo.ts';
import type { IsoDate, LocalTime } from './types.ts';

const MINUTE = 60_000;
const DAY = 86_400_000;
const ISO_DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

/** Days since 1970-01-01 of a calendar day. */
export function dayNumber(day: IsoDate): number {
  const known = dayNumbers.get(day);
  if (known !== undefined) return known;
  const m = ISO_DATE.exec(day);
  if (!m) throw new RangeError(`not a calendar day (YYYY-MM-DD): ${JSON.stringify(day)}`);
  return remember(dayNumbers, day, Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])) / DAY, 10_000);
}

// A scan reads the same few closing dates over and over.
const dayNumbers = new Map<string, number>();

export function dayFromNumber(n: number): IsoDate {
  return new Date(n * DAY).toISOString().slice(0, 10);
}

export function addDays(day: IsoDate, days: number): IsoDate {
  return dayFromNumber(dayNumber(day) + days);
}

/** Whole days from `a` to `b` (positive when `b` is later). */
export function daysBetween(a: IsoDate, b: IsoDate): number {
  return dayNumber(b) - dayNumber(a);
}

/** Adds calendar months, clamping to the month's last day (31 Jan + 1 month = 28/29 Feb). */
export function addMonths(day: IsoDate, months: number): IsoDate {
  const [y, m, d] = day.split('-').map(Number) as [number, number, number];
  const first = Date.UTC(y, m - 1 + months, 1);
  const lastDay = new Date(Date.UTC(y, m + months, 0)).getUTCDate();
  return dayFromNumber(first / DAY + Math.min(d, lastDay) - 1);
}

/** 0 = Sunday … 6 = Saturday. */
export function weekday(day: IsoDate): number {
  return (((dayNumber(day) + 4) % 7) + 7) % 7;
}

const validZones = new Map<string, boolean>();

/** Whether `zone` is an IANA time-zone name this runtime knows. */
export function isValidTimeZone(zone: string): boolean {
  let ok = validZones.get(zone);
  if (ok === undefined) {
    try {
      new Intl.DateTimeFormat('en-US', { timeZone: zone });
      ok = zone.length > 0;
    } catch {
      ok = false;
    }
    validZones.set(zone, ok);
  }
  return ok;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(zone: string): Intl.DateTimeFormat {
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    });
    formatters.set(zone, f);
  }
  return f;
}

interface WallClock {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
}

// formatToParts is the cost of every evaluation (a scan asks the same few instants — now, the due
// times of shared closing dates — in the same zones over and over): remember recent answers.
const wallClocks = new Map<string, WallClock>();

function wallClock(instant: Date, zone: string): WallClock {
  const key = `${zone}|${instant.getTime()}`;
  const cached = wallClocks.get(key);
  if (cached) return cached;
  const out: Record<string, number> = {};
  for (const part of formatter(zone).formatToParts(instant)) {
    if (part.type !== 'literal') out[part.type] = Number(part.value);
  }
  return remember(wallClocks, key, out as unknown as WallClock, 20_000);
}

/** Minutes to add to UTC to get the local time in `zone` at `instant` (e.g. +60 for CET). */
export function offsetMinutes(instant: Date, zone: string): number {
  const w = wallClock(instant, zone);
  const asUtc = Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute, w.second);
  return Math.round((asUtc - Math.floor(instant.getTime() / 1000) * 1000) / MINUTE);
}

/** The local calendar day in `zone` at `instant`. */
export function localDate(instant: Date, zone: string): IsoDate {
  const w = wallClock(instant, zone);
  return `${String(w.year).padStart(4, '0')}-${pad(w.month)}-${pad(w.day)}`;
}

/** Minutes since local midnight in `zone` at `instant`. */
export function localMinuteOfDay(instant: Date, zone: string): number {
  const w = wallClock(instant, zone);
  return w.hour * 60 + w.minute;
}

const zonedCache = new Map<string, number>();

/**
 * The instant at which the wall clock in `zone` shows `time` on `day`.
 * Inside a spring-forward gap the time moves forward by the gap (02:30 that does not exist
 * becomes 03:30); inside a fall-back overlap the earlier of the two instants is taken.
 */
export function zonedTime(day: IsoDate, time: LocalTime, zone: string): Date {
  const key = `${zone}|${day}|${time.hour}:${time.minute}`;
  const cached = zonedCache.get(key);
  if (cached !== undefined) return new Date(cached);
  const wall = dayNumber(day) * DAY + (time.hour * 60 + time.minute) * MINUTE;
  // The offsets in force a day either side cover every transition near this wall time.
  const before = offsetMinutes(new Date(wall - DAY), zone);
  const after = offsetMinutes(new Date(wall + DAY), zone);
  const candidates = [before, after]
    .map((offset) => wall - offset * MINUTE)
    .filter((t, i, all) => all.indexOf(t) === i)
    .filter((t) => offsetMinutes(new Date(t), zone) * MINUTE === wall - t)
    .sort((a, b) => a - b);
  // No candidate: the wall time falls in a gap; reading it with the offset before the gap moves
  // it forward by the gap's length.
  const result = candidates[0] ?? wall - before * MINUTE;
  return new Date(remember(zonedCache, key, result, 100_000));
}

/**
 * The first instant at which the wall clock in `zone` shows `time` on `day` or later: `zonedTime`,
 * except inside a spring-forward gap, where it is the gap's end (the instant the clock jumps: 03:00
 * for a 02:30 that does not exist), not the time moved forward by the gap (03:30). What ends at a
 * wall time (quiet hours, a weekend, a local day) has ended from then on; a `sendAt` is moved
 * forward by the gap instead, as SPEC section 3 says.
 */
export function zonedTimeOrGapEnd(day: IsoDate, time: LocalTime, zone: string): Date {
  const at = zonedTime(day, time, zone);
  const wall = dayNumber(day) * DAY + (time.hour * 60 + time.minute) * MINUTE;
  const offsetAt = (t: number) => offsetMinutes(new Date(t), zone);
  if (offsetAt(at.getTime()) * MINUTE === wall - at.getTime()) return at;
  // In a gap: the clock jumped after the wall time read with the offset after the gap (an instant
  // before the jump) and by `at` (after it). Transitions fall on whole minutes.
  let before = wall - offsetAt(wall + DAY) * MINUTE;
  let after = at.getTime();
  const offsetAfter = offsetAt(after);
  while (after - before > MINUTE) {
    const mid = before + Math.floor((after - before) / MINUTE / 2) * MINUTE;
    if (offsetAt(mid) === offsetAfter) after = mid;
    else before = mid;
  }
  return new Date(after);
}

/** Parses `HH:MM` (24-hour). Returns null when malformed. */
export function parseLocalTime(text: string): LocalTime | null {
  const m = /^([01]\d|2[0-3]):([0-5]\d)$/.exec(text);
  return m ? { hour: Number(m[1]), minute: Number(m[2]) } : null;
}


/** Parses `<number><unit>` with unit m, h or d into minutes. Returns null when malformed. */
export function parseDuration(text: string): number | null {
  const m = /^(\d+)([mhd])$/.exec(text);
  if (!m) return null;
  const n = Number(m[1]);
  return m[2] === 'm' ? n : m[2] === 'h' ? n * 60 : n * 1440;
}

function pad(n: number): string {
  return String(n).padStart(2, '0');
}
