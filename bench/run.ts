/**
 * `npm run bench`: issue 5's measures, each as a ratio to a raw baseline measured in the same run
 * (baseline, subject, baseline, subject, …; the median of the per-pair ratios). It creates and
 * drops its own databases, uses and empties its own Redis prefix, and runs its own SMTP sink.
 *
 *   BENCH_SCALE=0.1   every size × 0.1 (a quick run while developing)
 *   BENCH_PAIRS=3     fewer alternating pairs (5 by default, at least 3)
 *   BENCH_ONLY=explain,tick,enqueue,e2e,scan,simulate   a subset (scan includes memory)
 *   BENCH_EXTRA_SQL='create index …'   run after the migrations: measure a what-if
 */
import { loadSettings, REPO } from './lib/settings.ts';
import { makeBaselineQueue, type BenchContext } from './lib/context.ts';
import { describeMachine } from './lib/machine.ts';
import { removeQueueKeys } from '../test/helpers/queue.ts';
import { benchQueuePrefix, benchRuntime, createBenchDatabase, type BenchDatabase } from './lib/services.ts';
import { startBenchSink, type BenchSink } from './lib/smtp-sink.ts';
import { describe, median, table, type Measure } from './lib/stats.ts';
import { generate } from './lib/generate.ts';
import { measureEnqueue } from './measures/enqueue.ts';
import { measureLatency, measureThroughput } from './measures/delivery.ts';
import { explainChecks } from './measures/explain.ts';
import { measureScanAndMemory } from './measures/scan-decide.ts';
import { measureSimulate } from './measures/simulate.ts';
import { collectJobs, measureTicks } from './measures/tick.ts';


const started = performance.now();
const log = (line: string) => console.log(`[${((performance.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}`);

async function main(): Promise<number> {
  const settings = loadSettings();
  const only = new Set((process.env.BENCH_ONLY ?? 'explain,scan,enqueue,tick,e2e,memory,simulate').split(',').map((s) => s.trim()));
  for (const line of await describeMachine(settings.adminUrl, settings.redisUrl, REPO)) console.log(line);
  if (settings.extraSql) console.log(`what-if: BENCH_EXTRA_SQL run after the migrations: ${settings.extraSql}`);
  console.log(`scale ${settings.scale}: ${settings.bigRows} and ${settings.smallRows} opportunities; ${settings.pairs} pairs per measure; now ${settings.now.toISOString()}`);
  const cleanups: (() => Promise<unknown>)[] = [];
  const cleanup = async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch((e) => console.error('cleanup:', e));
  };
  process.once('SIGINT', () => { void cleanup().then(() => process.exit(130)); });
  try {
    const prefix = benchQueuePrefix();
    cleanups.push(() => removeQueueKeys(prefix, settings.redisUrl));
    const sink: BenchSink = await startBenchSink();
    cleanups.push(() => sink.close());
    const big: BenchDatabase = await createBenchDatabase(settings.adminUrl, 'big', settings.extraSql);
    cleanups.push(() => big.drop());
    const small: BenchDatabase = await createBenchDatabase(settings.adminUrl, 'small', settings.extraSql);
    cleanups.push(() => small.drop());
    const rt = benchRuntime(big.url, settings.redisUrl, prefix, sink.url);
    cleanups.push(() => rt.close());
    const content = await rt.content();
    for (const [db, n] of [[big, settings.bigRows], [small, settings.smallRows]] as const) {
      const g = await generate(db.url, n, settings.now, content.journey);
      log(`generated ${db.name}: ${g.opportunities} opportunities, ${g.contacts} contacts, ${g.roles} roles, ${g.activities} activities, ${g.history} past decisions in ${g.seconds.toFixed(1)} s`);
    }
    const baselineQueue = makeBaselineQueue(rt, prefix);
    cleanups.push(() => baselineQueue.close());
    const ctx: BenchContext = { settings, big, small, prefix, sink, rt, content, journey: content.journey, baselineQueue, jobs: [] };

    const measures: Measure[] = [];
    const done = (m: Measure) => {
      measures.push(m);
      log(describe(m));
    };
    let explainOk = true;
    if (only.has('explain')) {
      for (const check of await explainChecks(ctx)) {
        explainOk &&= check.pass;
        log(`EXPLAIN ${check.name}: ${check.pass ? 'PASS' : `FAIL (${check.problems.join('; ')})`}${check.warnings.length ? `; note: ${check.warnings.join('; ')}` : ''}`);
        for (const line of check.plan) console.log(`    ${line}`);
      }
    }
    if (only.has('tick')) {
      const { tick, second } = await measureTicks(ctx, log);
      done(tick);
      done(second);
    } else if (only.has('enqueue') || only.has('e2e')) {
      await collectJobs(ctx);
    }
    log(`${ctx.jobs.length} send jobs from a first tick over the big table`);
    if (only.has('enqueue')) done(await measureEnqueue(ctx));
    if (only.has('e2e')) {
      const throughput = await measureThroughput(ctx, log);
      done(throughput);
      done(await measureLatency(ctx, median(throughput.subject), log));
    }
    if (only.has('scan') || only.has('memory')) {
      const { scan, memory } = await measureScanAndMemory(ctx, log);
      done(scan);
      done(memory);
    }
    if (only.has('simulate')) done(await measureSimulate(ctx));

    console.log(`\n# Results (median of ${settings.pairs} alternating pairs; ratio = median of the per-pair ratios)\n`);
    console.log(table(measures, settings.pairs));
    if (only.has('explain')) console.log(`\nEXPLAIN checks: ${explainOk ? 'PASS' : 'FAIL'}`);
    log('done');
    return 0;
  } finally {
    await cleanup();
  }
}

main().then((code) => { process.exitCode = code; }, (error) => {
  console.error(error);
  process.exitCode = 1;
});
