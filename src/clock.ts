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
  if (Number.isNaN(t)) throw new RangeError(`--now is not a valid instant: ${JSON.stringify(iso)}`);
  return t;
}
