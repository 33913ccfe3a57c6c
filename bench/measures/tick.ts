/**
 * The full tick (scan, decide, write suppressions, enqueue) over the big table, against the slower
 * of its two raw parts measured in the same pair: the `pg-cursor` read of the same rows and
 * `addBulk(1000)` of as many empty jobs as the tick enqueues. A tick that overlaps reading with
 * enqueueing can approach that bound; one that does them in turn cannot go below their sum.
 *
 * Each pair then runs a second tick over the unchanged data, with the first tick's jobs still
 * waiting: it must add no job and no row, and not be slower than the first.
 */
import { runScan } from '../../src/scan.ts';
import { emptyQueue, resetDecisions, scanDeps, seconds, waitingJobs, type BenchContext } from '../lib/context.ts';
import { cursorRead, rawClient } from '../lib/raw-read.ts';
import { median, type Measure } from '../lib/stats.ts';
import { addEmptyJobs } from './enqueue.ts';
import { PAGE_SIZE, scanQueries } from './scan-decide.ts';

/** Without the tick measure: the send jobs of one first tick, for the enqueue and delivery measures. */
export async function collectJobs(ctx: BenchContext): Promise<void> {
  await resetDecisions(ctx.big.db, ctx.settings.now);
  await runScan(scanDeps(ctx.big.db, ctx.journey, async (batch) => { ctx.jobs.push(...batch); return batch.length; }), ctx.settings.now, { pageSize: PAGE_SIZE });
  await resetDecisions(ctx.big.db, ctx.settings.now);
}

export async function measureTicks(ctx: BenchContext, log: (line: string) => void): Promise<{ tick: Measure; second: Measure }> {
  const { now, pairs } = ctx.settings;
  const db = ctx.big.db;
  const queries = await scanQueries(ctx, ctx.big.url);
  const client = await rawClient(ctx.big.url);
  const enqueue = ctx.rt.enqueuer();
  // The first tick's jobs are the "real payloads" of the enqueue and delivery measures.
  let keep = ctx.jobs.length === 0;
  // As the daemon runs a tick: its read pool for the pages, the primary for the lock and writes.
  const deps = scanDeps(db, ctx.journey, async (batch) => {
    if (keep) ctx.jobs.push(...batch);
    return enqueue(batch);
  }, ctx.rt.readDb);
  const tick = { baseline: [] as number[], subject: [] as number[], read: [] as number[], add: [] as number[] };
  const second = { baseline: [] as number[], subject: [] as number[], newJobs: 0, newRows: 0, reported: 0, firstMiscounted: 0 };
  let rows = 0;
  let jobs = 0;
  const reset = async () => {
    await resetDecisions(db, now);
    await emptyQueue(ctx.rt.queue);
    await emptyQueue(ctx.baselineQueue);
  };
  try {
    for (let i = 0; i < pairs; i++) {
      await reset();
      let t = performance.now();
      rows = await cursorRead(client, queries, PAGE_SIZE);
      const read = seconds(t);
      const add = await addEmptyJobs(ctx, jobs || ctx.jobs.length || 1);
      tick.read.push(read);
      tick.add.push(add);
      tick.baseline.push(rows / Math.max(read, add));

      await reset();
      t = performance.now();
      const first = await runScan(deps, now, { pageSize: PAGE_SIZE });
      const firstSeconds = seconds(t);
      keep = false;
      tick.subject.push(first.scanned / firstSeconds);
      jobs = await waitingJobs(ctx.rt.queue);
      if (first.enqueued !== jobs) second.firstMiscounted += 1;
      const rowsAfterFirst = await decisionsSince(ctx);

      t = performance.now();
      const again = await runScan(deps, now, { pageSize: PAGE_SIZE });
      const againSeconds = seconds(t);
      second.baseline.push(firstSeconds);
      second.subject.push(againSeconds);
      second.newJobs += (await waitingJobs(ctx.rt.queue)) - jobs;
      second.newRows += (await decisionsSince(ctx)) - rowsAfterFirst;
      second.reported += again.enqueued;
      log(`pair ${i + 1}: first tick ${first.scanned} rows, ${jobs} jobs, ${first.suppressed} suppressions in ${firstSeconds.toFixed(2)} s; second tick ${againSeconds.toFixed(2)} s, summary.enqueued ${again.enqueued}, summary.suppressed ${again.suppressed}`);
    }
  } finally {
    await client.end();
    await reset();
  }
  return {
    tick: {
      key: 'tick', title: 'full tick (scan, decide, enqueue)', unit: 'rows/s', subjectName: 'runScan + Runtime.enqueuer()',
      baselineName: 'slower of raw read / addBulk', baseline: tick.baseline, subject: tick.subject,
      ratios: tick.subject.map((s, i) => s / tick.baseline[i]!), goal: { op: '>=', value: 0.7 },
      notes: [
        `${rows} rows and ${jobs} jobs per tick; raw read median ${median(tick.read).toFixed(2)} s, addBulk of ${jobs} empty jobs median ${median(tick.add).toFixed(2)} s (sum ${(median(tick.read) + median(tick.add)).toFixed(2)} s)`,
      ],
    },
    second: {
      key: 'second', title: 'second tick over unchanged data', unit: 's', subjectName: 'second tick', baselineName: 'first tick',
      baseline: second.baseline, subject: second.subject, ratios: second.subject.map((s, i) => s / second.baseline[i]!),
      goal: { op: '<=', value: 1 },
      extra: [
        { text: `0 new jobs (got ${second.newJobs})`, ok: second.newJobs === 0 },
        { text: `0 new deliveries rows (got ${second.newRows})`, ok: second.newRows === 0 },
        { text: `second ticks' summaries report 0 enqueued (got ${second.reported}); first ticks' report the jobs added (${second.firstMiscounted ? `${second.firstMiscounted} did not` : 'all did'})`, ok: second.reported === 0 && second.firstMiscounted === 0 },
      ],
      notes: [`the second ticks' jobs were all still waiting under the same ids, handed to BullMQ again: ${second.newJobs === 0 ? 'none added' : `${second.newJobs} added`}`],
    },
  };
}

async function decisionsSince(ctx: BenchContext): Promise<number> {
  const row = await ctx.big.db.selectFrom('deliveries').select((eb) => eb.fn.countAll<number>().as('n'))
    .where('decided_at', '>=', ctx.settings.now).executeTakeFirstOrThrow();
  return Number(row.n);
}
