import type { Command } from 'commander';
import { readForecastRows } from '../db/forecast-rows.ts';
import { ForecastTally, namedIds, type Forecast, type ForecastFigures } from '../forecast.ts';
import { clockFrom, journeyFor, withRuntime } from './shared.ts';

export function registerForecast(program: Command): void {
  program.command('forecast')
    .description('expected revenue of open opportunities closing in the next 7 days, 30 days and 3 months, per currency and stage, and the stale ones')
    .option('--now <iso>', 'count from the local day of this instant (in the journey\'s defaults.timeZone) instead of the clock')
    .option('--json', 'print JSON instead of a table')
    .action((opts: { now?: string; json?: boolean }) => withRuntime(async (rt) => {
      const now = clockFrom(opts.now).now();
      const journey = await journeyFor(rt, 'forecast');
      const tally = new ForecastTally(now, journey.defaults.timeZone);
      const { withoutClosingDate } = await readForecastRows(rt.db, tally.horizon, (rows) => {
        for (const row of rows) tally.add(row);
      });
      tally.addWithoutClosingDate(withoutClosingDate);
      const forecast = tally.result();
      if (opts.json) console.log(JSON.stringify(forecast, null, 2));
      else printForecast(forecast);
    }, { sends: false }));
}

const HEADINGS = ['window', 'currency', 'opportunities', 'without amount', 'amount', 'expected'];

function printForecast(f: Forecast): void {
  console.log(`forecast as of ${f.asOf} (${f.timeZone}): open opportunities closing from today, 7d before ${f.before['7d']}, 30d before ${f.before['30d']}, 3m before ${f.before['3m']}`);
  if (f.windows.length === 0) console.log('  no open opportunity closes in the next 3 months');
  else printRows([HEADINGS, ...f.windows.map((w) => [w.window, w.currency, ...cells(w)])]);
  if (f.byStage.length > 0) {
    console.log('by stage:');
    printRows([['window', 'currency', 'stage', ...HEADINGS.slice(2)], ...f.byStage.map((s) => [s.window, s.currency, s.stage, ...cells(s)])]);
  }
  const stale = f.stale.map((s) => `${s.currency} ${s.opportunities} (${s.withoutAmount} without amount), amount ${s.amount}, expected ${s.expected}`);
  console.log(`stale (closing date passed, still open): ${stale.length ? stale.join('; ') : 'none'}`);
  console.log(`no closing date: ${f.noClosingDate}`);
  const bad = f.unreadableAmounts;
  if (bad.opportunities > 0) {
    console.log(`amount not a number (counted without amount): ${bad.opportunities} (opportunities ${namedIds(bad)})`);
  }
}

function cells(f: ForecastFigures): string[] {
  return [String(f.opportunities), String(f.withoutAmount), f.amount, f.expected];
}

/** Text columns left-aligned, figures right-aligned. */
function printRows(rows: string[][]): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const figuresFrom = rows[0]!.length - 4;
  for (const row of rows) {
    console.log(`  ${row.map((cell, i) => (i >= figuresFrom ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!))).join('  ')}`);
  }
}
