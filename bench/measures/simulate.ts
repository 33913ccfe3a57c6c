/**
 * `simulate --days 90` over the small table: `runSimulation` as the command calls it, against a
 * raw `pg-cursor` read of the rows it reads (the scan's page queries with a 90-day horizon).
 * No goal: the figure is printed, and how many raw reads it costs.
 */
import { runSimulation } from '../../src/simulate.ts';
import { seconds, type BenchContext } from '../lib/context.ts';
import { cursorRead, rawClient } from '../lib/raw-read.ts';
import { alternate, type Measure } from '../lib/stats.ts';
import { PAGE_SIZE, scanQueries } from './scan-decide.ts';

const DAYS = 90;

export async function measureSimulate(ctx: BenchContext): Promise<Measure> {
  const db = ctx.small.db;
  // simulate reads one chain at a time (`runSimulation`).
  const queries = await scanQueries(ctx, ctx.small.url, DAYS, PAGE_SIZE, 1);
  const client = await rawClient(ctx.small.url);
  const counts = { rows: 0, sends: 0, suppressions: 0 };
  try {
    const figures = await alternate(ctx.settings.pairs, async () => {
      const t = performance.now();
      counts.rows = await cursorRead(client, queries, PAGE_SIZE);
      return seconds(t);
    }, async () => {
      const t = performance.now();
      const simulation = await runSimulation(db, ctx.journey, ctx.settings.now, DAYS);
      const s = seconds(t);
      counts.sends = simulation.days.reduce((n, d) => n + d.sends.length, 0);
      counts.suppressions = simulation.days.reduce((n, d) => n + d.suppressions.length, 0);
      return s;
    });
    return {
      key: 'simulate', title: `simulate --days ${DAYS}, ${ctx.settings.smallRows.toLocaleString('en-US')} opportunities`, unit: 's',
      subjectName: 'runSimulation', baselineName: 'pg-cursor read', ...figures,
      ratios: figures.subject.map((s, i) => s / figures.baseline[i]!), goal: null,
      notes: [`${counts.rows} rows read; ${counts.sends} sends and ${counts.suppressions} suppressions over ${DAYS} days; ratio = simulate seconds / raw read seconds`],
    };
  } finally {
    await client.end();
  }
}
