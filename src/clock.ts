/** The engine reads time only through a Clock, once per pass or job, and passes `now` down. */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

/** A clock stopped at `iso` (the `--now` option). Throws on anything but a full ISO instant. */
export function fixedClock(iso: string): Clock {
  const t = parseInstant(iso);
  return { now: () => new Date(t) };
}

export function parseInstant(iso: string): number {
  // A date alone or a time without an offset would be read in the process's own zone: refuse.
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(iso)) {
    throw new RangeError(`--now must be an ISO instant with an offset, e.g. 2026-12-01T09:00:00Z; got ${JSON.stringify(iso)}`);
  }
  const t = Date.parse(iso);
  // Date.parse rolls an impossible day over (2026-02-30 is March 2): refuse it instead.
  const [year, month, day] = iso.slice(0, 10).split('-').map(Number) as [number, number, number];
  const monthLength = new Date(Date.UTC(2000, month, 0)).getUTCDate() - (month === 2 && !isLeapYear(year) ? 1 : 0);
  if (Number.isNaN(t) || day < 1 || day > monthLength) throw new RangeError(`--now is not a valid instant: ${JSON.stringify(iso)}`);
  return t;
}

function isLeapYear(year: number): boolean {
  return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
}
