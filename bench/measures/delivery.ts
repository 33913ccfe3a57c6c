/**
 * Delivery, through the engine (BullMQ worker -> `deliver`: reload, decide, claim, render, send,
 * record) against render + send of the same emails with no queue and no database, both into the
 * same in-process SMTP sink with the same concurrency and the same pooled mailer.
 *
 * - Throughput: the same emails, all ready at once; emails/s until the last one arrives.
 * - Latency: emails falling due one by one, open loop, at half of the engine's throughput; the
 *   time from falling due (the scheduled instant, so a late feeder counts against the path) to
 *   arrival in the sink; p99.
 */
import { fixedClock } from '../../src/clock.ts';
import { LiveContent } from '../../src/content.ts';
import { listStages } from '../../src/db/opportunities.ts';
import { createMailer } from '../../src/email/mailer.ts';
import { drain } from '../../workers/drain.ts';
import { startDeliverWorker } from '../../workers/deliver-worker.ts';
import { emptyQueue, resetDecisions, type BenchContext } from '../lib/context.ts';
import { composeSettings, limiter, prepareDirect, renderAndSend, type DirectEmail } from '../lib/direct-send.ts';
import { alternate, median, percentile, type Measure } from '../lib/stats.ts';

const TIMEOUT_MS = 120_000;

function liveContent(ctx: BenchContext): LiveContent {
  return new LiveContent(ctx.content, ctx.rt.config, () => listStages(ctx.rt.db), ctx.rt.logger);
}

async function resetDelivery(ctx: BenchContext): Promise<void> {
  await resetDecisions(ctx.big.db, ctx.settings.now);
  await emptyQueue(ctx.rt.queue);
  ctx.sink.reset();
}

async function directThroughput(ctx: BenchContext, emails: readonly DirectEmail[]): Promise<number> {
  await resetDelivery(ctx);
  const mailer = createMailer(ctx.rt.config);
  const compose = composeSettings(ctx);
  const limit = limiter(ctx.rt.config.concurrency);
  try {
    const t = performance.now();
    const outcomes = await Promise.all(emails.map((e) => limit(() => renderAndSend(ctx.content.templates, compose, mailer, e))));
    const refused = outcomes.filter((o) => o.kind !== 'accepted').length;
    if (refused) throw new Error(`bench: ${refused} direct sends were not accepted`);
    await ctx.sink.waitFor(emails.length, TIMEOUT_MS);
    return emails.length / ((ctx.sink.lastArrival() - t) / 1000);
  } finally {
    await mailer.close();
  }
}

async function engineThroughput(ctx: BenchContext, emails: readonly DirectEmail[], log: (line: string) => void): Promise<number> {
  await resetDelivery(ctx);
  await ctx.rt.enqueuer()(emails.map((e) => e.job));
  const mailer = createMailer(ctx.rt.config);
  try {
    const t = performance.now();
    const totals = await drain(ctx.rt, { clock: fixedClock(ctx.settings.now.toISOString()), content: liveContent(ctx), mailer });
    await ctx.sink.waitFor(emails.length, TIMEOUT_MS);
    if (totals.sent !== emails.length) log(`warning: drain sent ${totals.sent} of ${emails.length} (${JSON.stringify(totals)})`);
    return emails.length / ((ctx.sink.lastArrival() - t) / 1000);
  } finally {
    await mailer.close();
  }
}

/**
 * A warm-up of both paths (untimed in the measure), which also sizes the runs: as many emails as
 * the engine sends in about `RUN_SECONDS`, at most `settings.emails`, at least 100.
 */
async function warmUpAndSize(ctx: BenchContext, log: (line: string) => void): Promise<number> {
  const probe = await prepareDirect(ctx, WARM_UP);
  await directThroughput(ctx, probe);
  const rate = await engineThroughput(ctx, probe, log);
  const n = Math.max(100, Math.min(ctx.settings.emails, Math.round(rate * RUN_SECONDS)));
  log(`delivery warm-up: ${probe.length} emails through each path; the engine sent ${rate.toFixed(1)}/s, so ${n} emails per run`);
  return n;
}

const WARM_UP = 50;
const RUN_SECONDS = 15;

export async function measureThroughput(ctx: BenchContext, log: (line: string) => void): Promise<Measure> {
  const emails = await prepareDirect(ctx, await warmUpAndSize(ctx, log));
  const figures = await alternate(ctx.settings.pairs, () => directThroughput(ctx, emails), () => engineThroughput(ctx, emails, log));
  await resetDelivery(ctx);
  return {
    key: 'e2e', title: 'end-to-end emails into the SMTP sink', unit: 'emails/s', subjectName: 'queue + worker + deliver',
    baselineName: 'render + send, no queue', ...figures, ratios: figures.subject.map((s, i) => s / figures.baseline[i]!),
    goal: { op: '>=', value: 0.7 },
    notes: [`${emails.length} emails per run (about ${RUN_SECONDS} s of the engine, at most ${ctx.settings.emails}); concurrency ${ctx.rt.config.concurrency} on both paths, pooled SMTP (5 connections)`],
  };
}

/** Feeds `emails` at `rate` per second from `start` (performance.now()); returns each one's scheduled instant. */
async function feed(emails: readonly DirectEmail[], rate: number, start: number, fire: (e: DirectEmail) => Promise<void>): Promise<number[]> {
  const scheduled = emails.map((_, i) => start + (i * 1000) / rate);
  for (let i = 0; i < emails.length; i++) {
    const wait = scheduled[i]! - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    await fire(emails[i]!);
  }
  return scheduled;
}

function latencies(ctx: BenchContext, emails: readonly DirectEmail[], scheduled: readonly number[]): number[] {
  return emails.map((e, i) => (ctx.sink.arrivals.get(e.key) ?? Number.POSITIVE_INFINITY) - scheduled[i]!);
}

async function directLatency(ctx: BenchContext, emails: readonly DirectEmail[], rate: number): Promise<number[]> {
  await resetDelivery(ctx);
  const mailer = createMailer(ctx.rt.config);
  const compose = composeSettings(ctx);
  const limit = limiter(ctx.rt.config.concurrency);
  try {
    const scheduled = await feed(emails, rate, performance.now() + 100, async (e) => {
      void limit(() => renderAndSend(ctx.content.templates, compose, mailer, e));
    });
    await ctx.sink.waitFor(emails.length, TIMEOUT_MS);
    return latencies(ctx, emails, scheduled);
  } finally {
    await mailer.close();
  }
}

async function engineLatency(ctx: BenchContext, emails: readonly DirectEmail[], rate: number): Promise<number[]> {
  await resetDelivery(ctx);
  const mailer = createMailer(ctx.rt.config);
  const worker = startDeliverWorker(ctx.rt, { clock: fixedClock(ctx.settings.now.toISOString()), content: liveContent(ctx), mailer });
  const enqueue = ctx.rt.enqueuer();
  try {
    await worker.waitUntilReady();
    const scheduled = await feed(emails, rate, performance.now() + 100, async (e) => { await enqueue([e.job]); });
    await ctx.sink.waitFor(emails.length, TIMEOUT_MS);
    return latencies(ctx, emails, scheduled);
  } finally {
    await worker.close();
    await mailer.close();
  }
}

export async function measureLatency(ctx: BenchContext, capacity: number, log: (line: string) => void): Promise<Measure> {
  const rate = capacity / 2;
  // At least 50 samples (p99 of fewer is the maximum), but no run longer than 30 s.
  const wanted = Math.round(Math.min(Math.max(50, rate * ctx.settings.latencySeconds), rate * 30));
  const emails = await prepareDirect(ctx, wanted);
  log(`latency runs: ${emails.length} emails at ${rate.toFixed(1)}/s (half of ${capacity.toFixed(1)} emails/s) for ${(emails.length / rate).toFixed(1)} s`);
  const all = { direct: [] as number[][], engine: [] as number[][] };
  const figures = await alternate(ctx.settings.pairs, async () => {
    const l = await directLatency(ctx, emails, rate);
    all.direct.push(l);
    return percentile(l, 99);
  }, async () => {
    const l = await engineLatency(ctx, emails, rate);
    all.engine.push(l);
    return percentile(l, 99);
  });
  await resetDelivery(ctx);
  const p50 = (runs: number[][]) => median(runs.map((l) => percentile(l, 50))).toFixed(1);
  return {
    key: 'latency', title: 'due-to-sent p99 at half of capacity', unit: 'ms', subjectName: 'queue + worker', baselineName: 'direct sends', ...figures,
    ratios: figures.subject.map((s, i) => s / figures.baseline[i]!),
    goal: { op: '<=', value: 2 },
    notes: [`${emails.length} emails per run at ${rate.toFixed(1)}/s; p50 median: direct ${p50(all.direct)} ms, engine ${p50(all.engine)} ms`],
  };
}
