/**
 * Enqueue, jobs/s: the engine's enqueuer (deterministic job ids, retry options, chunks of 1000)
 * with the send jobs of a real first tick, against `addBulk` of as many empty jobs, 1000 at a time.
 */
import { emptyQueue, seconds, type BenchContext } from '../lib/context.ts';
import { alternate, type Measure } from '../lib/stats.ts';

/** `addBulk(1000)` of `n` empty jobs on the baseline queue; returns seconds. */
export async function addEmptyJobs(ctx: BenchContext, n: number): Promise<number> {
  const t = performance.now();
  for (let i = 0; i < n; i += 1000) {
    await ctx.baselineQueue.addBulk(Array.from({ length: Math.min(1000, n - i) }, () => ({ name: 'deliver', data: {} })));
  }
  return seconds(t);
}

export async function measureEnqueue(ctx: BenchContext): Promise<Measure> {
  const jobs = ctx.jobs;
  if (jobs.length === 0) throw new Error('bench: the first tick produced no send job to enqueue');
  const enqueue = ctx.rt.enqueuer();
  await emptyQueue(ctx.rt.queue);
  const figures = await alternate(ctx.settings.pairs, async () => {
    await emptyQueue(ctx.baselineQueue);
    const s = await addEmptyJobs(ctx, jobs.length);
    await emptyQueue(ctx.baselineQueue);
    return jobs.length / s;
  }, async () => {
    await emptyQueue(ctx.rt.queue);
    const t = performance.now();
    await enqueue(jobs);
    const s = seconds(t);
    await emptyQueue(ctx.rt.queue);
    return jobs.length / s;
  });
  const sample = JSON.stringify(jobs[0]);
  return {
    key: 'enqueue', title: 'enqueue, real payloads', unit: 'jobs/s', subjectName: 'Runtime.enqueuer()', baselineName: 'addBulk(1000) of empty jobs', ...figures,
    ratios: figures.subject.map((s, i) => s / figures.baseline[i]!),
    goal: { op: '>=', value: 0.8 },
    notes: [`${jobs.length} jobs per run (the sends of one first tick over the big table), e.g. ${sample}`],
  };
}
