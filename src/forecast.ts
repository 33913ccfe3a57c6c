/**
 * The forecast (SPEC section 6): open opportunities grouped by how soon they close, per currency,
 * with their total amount and expected revenue. Pure: rows in, figures out; `now` and the time
 * zone are arguments, the database is read elsewhere (`src/db/forecast-rows.ts`).
 *
 * Glossary:
 * - **today**: the calendar day of `now` in the journey's `defaults.timeZone`.
 * - **window**: `7d`, `30d`, `3m`: closing dates from today inclusive to today + 7 days, + 30 days,
 *   + 3 calendar months, exclusive. Windows are cumulative: `30d` includes `7d`.
 * - **stale**: still open, and the closing date is before today.
 * - **expected**: Σ amount × stage probability / 100, summed exactly and rounded half up to cents
 *   once, at the end. Amounts in different currencies are never added.
 */
import { formatCents, parseDecimal } from './journey/money.ts';
import { addDays, addMonths, localDate } from './journey/time.ts';
import type { IsoDate } from './journey/types.ts';

export const FORECAST_WINDOWS = ['7d', '30d', '3m'] as const;
export type ForecastWindow = (typeof FORECAST_WINDOWS)[number];

/** One open opportunity as the forecast needs it. */
export interface ForecastRow {
  /** Named when the row's amount cannot be read (`unreadableAmounts`). */
  id?: number | string;
  closingDate: IsoDate | null;
  /** Exact decimal string (numeric(14,2)); null when blank. */
  amount: string | null;
  /** ISO 4217 code; the padding of `char(3)` and the letters' case are ignored. */
  currency: string;
  stage: string;
  /** The stage's `position`, which orders `byStage`. */
  stagePosition: number;
  /** The stage's probability, a whole percent 0..100. */
  probability: number;
}

export interface ForecastFigures {
  opportunities: number;
  /** Opportunities with a blank amount: counted, adding nothing to `amount` or `expected`. */
  withoutAmount: number;
  /** Σ amount, 2 decimals. */
  amount: string;
  /** Σ amount × probability / 100, exact, rounded half up once, 2 decimals. */
  expected: string;
}

export interface WindowFigures extends ForecastFigures {
  window: ForecastWindow;
  currency: string;
}

export interface StageFigures extends WindowFigures {
  stage: string;
}

export interface StaleFigures extends ForecastFigures {
  currency: string;
}

export interface Forecast {
  /** Today, in `timeZone`. */
  asOf: IsoDate;
  timeZone: string;
  /** The first closing date outside each window. */
  before: Record<ForecastWindow, IsoDate>;
  /** By window (7d, 30d, 3m), then currency; a currency with nothing in a window is left out. */
  windows: WindowFigures[];
  /** By window, currency, then stage position. */
  byStage: StageFigures[];
  /** By currency. */
  stale: StaleFigures[];
  /** Open opportunities without a closing date: in no window. */
  noClosingDate: number;
  /**
   * Open opportunities whose amount is not a number (`NaN`, which numeric columns accept): counted
   * as without an amount, and named here (the first `UNREADABLE_IDS` ids) so that someone mends them.
   */
  unreadableAmounts: { opportunities: number; ids: (number | string)[] };
}

/** How many opportunities with an unreadable amount a forecast names. */
export const UNREADABLE_IDS = 20;

/** `12, 41` for people, with `…` when more were counted than named. */
export function namedIds(unreadable: Forecast['unreadableAmounts']): string {
  return `${unreadable.ids.join(', ')}${unreadable.opportunities > unreadable.ids.length ? ', …' : ''}`;
}

/** The calendar day the forecast counts from. */
export function forecastDay(now: Date, timeZone: string): IsoDate {
  return localDate(now, timeZone);
}

/** The first closing date outside each window of a forecast made on `today`. */
export function windowEnds(today: IsoDate): Record<ForecastWindow, IsoDate> {
  return { '7d': addDays(today, 7), '30d': addDays(today, 30), '3m': addMonths(today, 3) };
}

/** Running totals, exact: amounts scaled by money.ts, weighted by whole percents. */
interface Totals {
  opportunities: number;
  withoutAmount: number;
  amount: bigint;
  /** Σ scaled amount × percent: divide by 100 when formatting. */
  weighted: bigint;
}

/**
 * Accumulates rows one at a time, so a caller streaming pages holds one page plus one total per
 * (window, currency, stage): memory does not grow with the table.
 */
export class ForecastTally {
  readonly asOf: IsoDate;
  private readonly before: Record<ForecastWindow, IsoDate>;
  private readonly windows = new Map<string, Totals>();
  private readonly stages = new Map<string, Totals>();
  private readonly stale = new Map<string, Totals>();
  private readonly positions = new Map<string, number>();
  private undated = 0;
  private readonly unreadable = { opportunities: 0, ids: [] as (number | string)[] };

  constructor(now: Date, readonly timeZone: string) {
    this.asOf = forecastDay(now, timeZone);
    this.before = windowEnds(this.asOf);
  }

  /** The first closing date no window includes: rows from here on may be left unread. */
  get horizon(): IsoDate {
    return this.before['3m'];
  }

  add(row: ForecastRow): void {
    if (row.closingDate === null) {
      this.undated++;
      return;
    }
    if (!Number.isInteger(row.probability) || row.probability < 0 || row.probability > 100) {
      throw new RangeError(`stage ${row.stage}: probability must be a whole percent 0..100, got ${row.probability}`);
    }
    const currency = row.currency.trim().toUpperCase();
    const amount = this.amountOf(row);
    // YYYY-MM-DD strings order as the days they name. A day before the year 1 reads
    // `2027-01-01 BC` (PostgreSQL's ISO style): past, whatever its digits say.
    if (row.closingDate < this.asOf || !ISO_DAY.test(row.closingDate)) {
      addTo(this.stale, currency, amount, row.probability);
      return;
    }
    this.positions.set(row.stage, row.stagePosition);
    for (const window of FORECAST_WINDOWS) {
      if (row.closingDate >= this.before[window]) continue;
      addTo(this.windows, key(window, currency), amount, row.probability);
      addTo(this.stages, key(window, currency, row.stage), amount, row.probability);
    }
  }

  /** The amount, exact; null when blank, or when it is not a number (counted and named). */
  private amountOf(row: ForecastRow): bigint | null {
    if (row.amount === null) return null;
    try {
      return parseDecimal(row.amount);
    } catch (error) {
      if (!/^\s*nan\s*$/i.test(row.amount)) throw error;
      this.unreadable.opportunities++;
      if (row.id !== undefined && this.unreadable.ids.length < UNREADABLE_IDS) this.unreadable.ids.push(row.id);
      return null;
    }
  }

  /** Counts open opportunities without a closing date that were not passed to `add`. */
  addWithoutClosingDate(count: number): void {
    this.undated += count;
  }

  result(): Forecast {
    const windows = [...this.windows].map(([k, t]): WindowFigures => {
      const [window, currency] = unkey(k);
      return { window: window as ForecastWindow, currency: currency!, ...figures(t) };
    });
    const byStage = [...this.stages].map(([k, t]): StageFigures => {
      const [window, currency, stage] = unkey(k);
      return { window: window as ForecastWindow, currency: currency!, stage: stage!, ...figures(t) };
    });
    const stale = [...this.stale].map(([currency, t]): StaleFigures => ({ currency, ...figures(t) }));
    const windowOrder = (w: ForecastWindow) => FORECAST_WINDOWS.indexOf(w);
    windows.sort((a, b) => windowOrder(a.window) - windowOrder(b.window) || compareText(a.currency, b.currency));
    byStage.sort((a, b) => windowOrder(a.window) - windowOrder(b.window) || compareText(a.currency, b.currency)
      || this.positions.get(a.stage)! - this.positions.get(b.stage)! || compareText(a.stage, b.stage));
    stale.sort((a, b) => compareText(a.currency, b.currency));
    return {
      asOf: this.asOf, timeZone: this.timeZone, before: { ...this.before }, windows, byStage, stale, noClosingDate: this.undated,
      unreadableAmounts: { opportunities: this.unreadable.opportunities, ids: [...this.unreadable.ids] },
    };
  }
}

/** The forecast of `rows` (open opportunities) as of `now` in `timeZone`. */
export function computeForecast(rows: Iterable<ForecastRow>, now: Date, timeZone: string): Forecast {
  const tally = new ForecastTally(now, timeZone);
  for (const row of rows) tally.add(row);
  return tally.result();
}

function addTo(map: Map<string, Totals>, k: string, amount: bigint | null, probability: number): void {
  let t = map.get(k);
  if (!t) {
    t = { opportunities: 0, withoutAmount: 0, amount: 0n, weighted: 0n };
    map.set(k, t);
  }
  t.opportunities++;
  if (amount === null) {
    t.withoutAmount++;
  } else {
    t.amount += amount;
    t.weighted += amount * BigInt(probability);
  }
}

function figures(t: Totals): ForecastFigures {
  return { opportunities: t.opportunities, withoutAmount: t.withoutAmount, amount: formatCents(t.amount), expected: formatCents(t.weighted, 100n) };
}

const ISO_DAY = /^\d{4}-\d{2}-\d{2}$/;

// Window names, currency codes and stage keys hold no NUL.
const SEP = '\u0000';
const key = (...parts: string[]) => parts.join(SEP);
const unkey = (k: string) => k.split(SEP);

/** Code-unit order: the same on every machine, whatever its locale. */
function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
