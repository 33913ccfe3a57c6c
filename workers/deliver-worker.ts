/** Process wiring for delivery: a BullMQ Worker whose processor is `deliver`. */
import { MetricsTime, Worker } from 'bullmq';
import type { Clock } from '../src/clock.ts';
import type { LiveContent } from '../src/content.ts';
import { deliver, type DeliverDeps, type DeliverResult } from '../src/deliver.ts';
import type { Mailer } from '../src/email/mailer.ts';
import { DELIVER_QUEUE, queuePrefix, type DeliverJob } from '../src/queue/queues.ts';
import type { Runtime } from '../src/runtime.ts';

export interface DeliverWorkerOptions {
  clock: Clock;
  content: LiveContent;
  mailer: Mailer;
  /** Start taking jobs at once. @defaultValue true */
  autorun?: boolean;
}

export function deliverDeps(rt: Runtime, content: LiveContent, mailer: Mailer): DeliverDeps {
  return {
    db: rt.db,
    mailer,
    templates: () => content.templates,
    journey: () => content.journey,
    compose: { mailFrom: rt.config.mailFrom, publicUrl: rt.config.publicUrl, secret: rt.config.secret },
    logger: rt.logger,
    metrics: rt.metrics,
    handoverTimeoutMs: rt.config.handoverTimeoutMs,
  };
}

/** Longest wait between two checks for jobs whose worker died. */
const STALLED_CHECK_MS = 5_000;

export function startDeliverWorker(rt: Runtime, options: DeliverWorkerOptions): Worker<DeliverJob, DeliverResult> {
  const deps = deliverDeps(rt, options.content, options.mailer);
  let lastRefresh = 0;
  const worker = new Worker<DeliverJob, DeliverResult>(DELIVER_QUEUE, async (job) => {
    // Edits to templates and the journey reach workers within a few seconds.
    if (Date.now() - lastRefresh > 5_000) {
      lastRefresh = Date.now();
      await options.content.refresh();
    }
    return deliver(deps, job.data, options.clock.now(), (data) => job.updateData(data));
  }, {
    connection: rt.redis,
    prefix: queuePrefix(rt.config.queuePrefix, DELIVER_QUEUE),
    concurrency: rt.config.concurrency,
    autorun: options.autorun ?? true,
    // A killed worker's active jobs go back to the queue once its lock lapses, seen by the next
    // check for stalled jobs: every 5 s at most, so a job is taken again within the lock and 5 s
    // (with the check every lock, as before, it could take twice the lock).
    lockDuration: rt.config.jobLockMs,
    stalledInterval: Math.min(rt.config.jobLockMs, STALLED_CHECK_MS),
    // BullMQ's own counts of completed and failed jobs, for /metrics (`bullmq_job_completed_total`,
    // `bullmq_job_failed_total`), with a data point a minute for a day: each scrape reads them all.
    metrics: { maxDataPoints: MetricsTime.ONE_HOUR * 24 },
  });
  worker.on('failed', (job, err) => {
    rt.logger.warn({ jobId: job?.id, attempts: job?.attemptsMade, err: err.message }, 'delivery job failed; BullMQ retries it with backoff');
    if (job && job.attemptsMade >= (job.opts.attempts ?? 1) && (job.data.unrecorded?.length ?? 0) > 0) {
      // The job goes (removeOnFail) with the sends it kept: a later scan finds their steps due.
      rt.logger.error({ jobId: job.id, opportunityId: job.data.opportunityId, stepId: job.data.stepId },
        'the last attempt of the job could not record a send it completed; the step may be sent again');
    }
  });
  worker.on('error', (err) => rt.logger.error({ err: err.message }, 'delivery worker error'));
  return worker;
}
