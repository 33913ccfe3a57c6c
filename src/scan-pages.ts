/**
 * The scan's pages: every open opportunity that may have a step to decide around `now`, streamed
 * in keyset pages (closing-date steps by closing date, stage-entered steps per stage by the time
 * it was entered), each page prepared as soon as its rows arrive while later ones are read.
 * Shared by the scheduler's pass (`src/scan.ts`) and `simulate`.
 */
import type { Db } from './db/database.ts';
import {
  closingDatePage, stageEnteredPage, type ClosingDateCursor, type ScanRow, type StageEnteredCursor,
} from './db/opportunities.ts';
import { addDays, daysBetween } from './journey/time.ts';
import type { IsoDate, Journey, Step } from './journey/types.ts';
import { settleAll } from './settle.ts';

/**
 * Opportunities per keyset page: every page costs a few statements whatever its size, and 1,000
 * rows a page scanned a million opportunities faster than 500 or 2,000 (docs/benchmarks.md).
 */
export const DEFAULT_PAGE_SIZE = 1000;

const DAY = 86_400_000;

export interface PageOptions {
  pageSize: number;
  /** Also read opportunities whose steps fall due up to this many days after `now` (simulate). @defaultValue 0 */
  horizonDays?: number;
  /**
   * Keyset chains read at once (`SCAN_CHAINS` for the scan). With more than one, the closing-date
   * pass is cut into spans of closing days (`closingDateSpans`), each a chain of its own, and so is
   * each stage's stage-entered pass: chains are read side by side, their pages arrive interleaved,
   * and `onPage` may run for as many pages at once. With one, the passes are read in order, the
   * closing-date pass as one chain. @defaultValue 1
   */
  chains?: number;
}

/**
 * The scan's chains read at once. A chain's pages follow one another (each starts after the last
 * row of the one before), so one chain keeps PostgreSQL and Node waiting on each other in turn;
 * two kept both busy, and scanned 1,000,000 opportunities in 0.9 of the time (docs/benchmarks.md).
 */
export const SCAN_CHAINS = 2;

/** One keyset page: its rows, and the part of the journey (one pass) it is read for. */
export interface ScanPage {
  rows: ScanRow[];
  journey: Journey;
  /** closingDate: rows in (closing_date, id) order; stageEntered: one stage, in (stage_entered_at, id) order. */
  pass: 'closingDate' | 'stageEntered';
}

/**
 * Streams, in keyset pages, every open opportunity that may have a step to decide around `now`
 * (and up to `horizonDays` later), each page with the part of the journey it is read for:
 * closingDate steps by (closing_date, id), then stageEntered steps per stage by
 * (stage_entered_at, id).
 *
 * Each stage's stage-entered pass is a keyset chain of its own, and so is the closing-date pass,
 * or, when `options.chains` are read at once, each span of its closing days. With one chain at a
 * time, pages come in the order above; with more, interleaved.
 *
 * `prepare` (reading what a page needs besides its rows) starts as soon as the page's rows
 * arrive, and the next page is read meanwhile, while `onPage` runs on an earlier one: at most
 * 1 + `PAGES_AHEAD` pages per chain read at once are held (one processed, the next one read or
 * being prepared).
 */
export async function forEachScanPage<P = ScanPage>(
  db: Db, journey: Journey, now: Date, options: PageOptions, onPage: (page: P) => Promise<void>,
  prepare: (page: ScanPage) => Promise<P> = async (page) => page as P,
): Promise<void> {
  const { pageSize } = options;
  const lookback = lookbackDays(journey);
  const stop = { failed: false };
  const chains: (() => Promise<void>)[] = [];
  const closingSteps = journey.steps.filter((s) => s.trigger.kind === 'closingDate');
  if (closingSteps.length > 0) {
    const sub = { ...journey, steps: closingSteps };
    for (const range of closingDateSpans(journey, now, options)) {
      chains.push(() => keysetPages(pageSize, (after: ClosingDateCursor | null) => closingDatePage(db, range, after, pageSize),
        position, (rows) => prepare({ rows, journey: sub, pass: 'closingDate' }), onPage, stop));
    }
  }
  for (const [stage, steps] of stageEnteredSteps(journey)) {
    const maxDays = Math.max(...steps.map((s) => (s.trigger.kind === 'stageEntered' ? s.trigger.daysAfter : 0)));
    // Up to a day ahead (clocks a little apart), and the horizon's days besides: a stage entered
    // after `now` (data dated after a `--now`) may fall due inside it.
    const ahead = (options.horizonDays ?? 0) + 1;
    const range = { from: new Date(now.getTime() - (maxDays + lookback + 1) * DAY), to: new Date(now.getTime() + ahead * DAY) };
    const sub = { ...journey, steps };
    chains.push(() => keysetPages(pageSize, (after: StageEnteredCursor | null) => stageEnteredPage(db, stage, range, after, pageSize),
      (last) => ({ stageEnteredAt: last.cursor, id: last.id }),
      (rows) => prepare({ rows, journey: sub, pass: 'stageEntered' }), onPage, stop));
  }
  let next = 0;
  // Each reader takes the next chain in order. A chain that fails sets `stop` (`keysetPages`), so
  // every reader stops before its next page, and the pass throws once all have stopped (nothing
  // keeps reading under the scan's lock).
  const reader = async () => {
    while (!stop.failed && next < chains.length) await chains[next++]!();
  };
  await settleAll(Array.from({ length: Math.max(1, Math.min(options.chains ?? 1, chains.length)) }, reader));
}

/**
 * Reads keyset pages until a short one. Each page's `prepare` starts when its rows arrive; pages
 * are read ahead while earlier ones are prepared and processed, up to `PAGES_AHEAD` read or being
 * read, prepared or being prepared besides the one in `onPage`, which sees them in order.
 */
async function keysetPages<R, C, P>(
  pageSize: number, fetch: (after: C | null) => Promise<R[]>, cursorOf: (last: R) => C,
  prepare: (rows: R[]) => Promise<P>, onPage: (page: P) => Promise<void>, stop: { failed: boolean },
): Promise<void> {
  const read = (after: C | null) => fetch(after).then((rows) => {
    // An empty page (a span of closing days with no opportunity in range) is neither prepared nor handed on.
    const prepared = rows.length > 0 ? prepare(rows) : null;
    // A failure surfaces when awaited; until then it must not count as unhandled.
    prepared?.catch(() => {});
    return { rows, prepared };
  });
  const ahead: Promise<P>[] = [];
  let next: ReturnType<typeof read> | null = read(null);
  try {
    for (;;) {
      while (next && ahead.length < PAGES_AHEAD) {
        const { rows, prepared }: Awaited<ReturnType<typeof read>> = await next;
        if (prepared) ahead.push(prepared);
        next = rows.length === pageSize && !stop.failed ? read(cursorOf(rows[rows.length - 1]!)) : null;
        next?.catch(() => {});
      }
      const page = ahead.shift();
      if (!page) return;
      // Another chain failed: the pass is over, and what was read ahead is dropped.
      if (stop.failed) {
        await Promise.allSettled([page, ...ahead]);
        return;
      }
      await onPage(await page);
    }
  } catch (error) {
    // The other chains stop before their next page; nothing read ahead is left running once the
    // pass has failed (it holds the scan lock).
    stop.failed = true;
    await Promise.allSettled([...ahead, next?.then((n) => n.prepared)]);
    throw error;
  }
}

/**
 * Pages read and prepared ahead of the one processed, in each chain. With one chain, two kept
 * PostgreSQL and Node busy together (1M opportunities as fast as with three, with a lower peak);
 * with two chains read at once, one is as fast as two (0.97 of its time, medians of four
 * alternating runs) and the scan of 1M opportunities peaked at 204-220 MB instead of 225-234.
 */
export const PAGES_AHEAD = 1;

/** Days a step can stay undecided past its due day: the longest window, weekends, time zones. */
function lookbackDays(journey: Journey): number {
  const longest = Math.max(0, ...journey.steps.map((s) => s.timing.windowMinutes));
  return Math.ceil(longest / 1440) + 3;
}

/**
 * The closing-date pass in `count` spans of whole days, as even in days as can be (fewer when
 * there are fewer days). Each span ends in a short page, and a reader idles at the end while
 * another finishes a long span: two spans per chain read at once (four short pages, not one a day)
 * scanned 1,000,000 opportunities as fast as one span per day (1.03 times as fast, the median of
 * 13 alternating pairs, within the noise) in fewer statements.
 */
export function daySpans(from: IsoDate, to: IsoDate, count: number): { from: IsoDate; to: IsoDate }[] {
  const days = daysBetween(from, to) + 1;
  const spans = Math.max(1, Math.min(count, days));
  const out: { from: IsoDate; to: IsoDate }[] = [];
  for (let i = 0; i < spans; i++) {
    const first = Math.floor((i * days) / spans);
    const last = Math.floor(((i + 1) * days) / spans) - 1;
    out.push({ from: addDays(from, first), to: addDays(from, last) });
  }
  return out;
}

/**
 * The closing days the closing-date pass reads, in the spans its chains read: one span (the
 * whole pass, in order) with one chain at a time, two per chain with several. Empty when the
 * journey has no closing-date step.
 */
export function closingDateSpans(journey: Journey, now: Date, options: Omit<PageOptions, 'pageSize'>): { from: IsoDate; to: IsoDate }[] {
  const offsets = journey.steps.flatMap((s) => (s.trigger.kind === 'closingDate' ? [s.trigger.offsetDays] : []));
  if (offsets.length === 0) return [];
  const today = now.toISOString().slice(0, 10);
  const lookback = lookbackDays(journey);
  // The due day is closing date + offset; it lies within [today - lookback, today + horizon + 2].
  const from = addDays(today, -lookback - Math.max(...offsets));
  const to = addDays(today, (options.horizonDays ?? 0) + 2 - Math.min(...offsets));
  const chains = options.chains ?? 1;
  return daySpans(from, to, chains > 1 ? 2 * chains : 1);
}

function stageEnteredSteps(journey: Journey): Map<string, Step[]> {
  const out = new Map<string, Step[]>();
  for (const s of journey.steps) {
    if (s.trigger.kind !== 'stageEntered') continue;
    out.set(s.trigger.stage, [...(out.get(s.trigger.stage) ?? []), s]);
  }
  return out;
}

/** A row's place in the closing-date pass: its keyset cursor, and a bound of its page's decisions. */
export function position(row: ScanRow): ClosingDateCursor {
  return { closingDate: row.closing_date!, id: row.id };
}
