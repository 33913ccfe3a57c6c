/** Process wiring for delivery: a BullMQ Worker whose processor is `deliver`. */
import { DelayedError, MetricsTime, Worker, type Job } from 'bullmq';
import type { Clock } from '../src/clock.ts';
import type { LiveContent } from '../src/content.ts';
import { DeferredError, deliver, type DeliverDeps, type DeliverResult } from '../src/deliver.ts';
import type { Mailer } from '../src/email/mailer.ts';
import { DELIVER_QUEUE, queuePrefix, type DeliverJob } from '../src/queue/queues.ts';
import type { Runtime } from '../src/runtime.ts';
import { postgresUnreachable } from '../src/db/database.ts';
import { repeatLimited } from '../src/log-repeats.ts';

export interface DeliverWorkerOptions {
  clock: Clock;
  content: LiveContent;
  mailer: Mailer;
  /** Start taking jobs at once. @defaultValue true */
  autorun?: boolean;
  /**
   * A job's last attempt failed while it held a send it could not record: instead of failing (and
   * being dropped with it), the job waits `HELD_RETRY_MS` and tries again, attempts or not. Called
   * then, with the attempt's error; BullMQ emits no `failed` for it.
   */
  onHeld?: (job: Job<DeliverJob>, error: Error) => void;
  /** Counts the jobs being delivered (their processor running), and those started, for a caller that must know when none is. */
  running?: { count: number; started?: number };
}

export function deliverDeps(rt: Runtime, content: LiveContent, mailer: Mailer): DeliverDeps & Required<Pick<DeliverDeps, 'repeats'>> {
  return {
    db: rt.db,
    mailer,
    templates: () => content.templates,
    journey: () => content.journey,
    compose: { mailFrom: rt.config.mailFrom, publicUrl: rt.config.publicUrl, secret: rt.config.secret, previousSecrets: rt.config.previousSecrets },
    logger: rt.logger,
    metrics: rt.metrics,
    handoverTimeoutMs: rt.config.handoverTimeoutMs,
    repeats: repeatLimited(rt.logger),
  };
}

/** Longest wait between two checks for jobs whose worker died. */
const STALLED_CHECK_MS = 5_000;

/** Times a job's worker may die (or lose its lock, or refuse it as it stops without Redis) while holding it before BullMQ fails the job. */
const MAX_STALLS = 10;

/**
 * Longest wait before a job whose attempts are spent, and that still holds a send it could not
 * record, tries again: the backoff doubled once more, at least `HELD_RETRY_MIN_MS`, at most this
 * (once PostgreSQL is back, the send is recorded within it).
 */
export const HELD_RETRY_MS = 5 * 60_000;
const HELD_RETRY_MIN_MS = 1_000;

export function startDeliverWorker(rt: Runtime, options: DeliverWorkerOptions): Worker<DeliverJob, DeliverResult> {
  const deps = deliverDeps(rt, options.content, options.mailer);
  let lastRefresh = 0;
  const deliverOne = async (job: Job<DeliverJob>, token?: string): Promise<DeliverResult> => {
    // Edits to templates and the journey reach workers within a few seconds.
    if (Date.now() - lastRefresh > 5_000) {
      lastRefresh = Date.now();
      await options.content.refresh();
    }
    try {
      // Not timed (`work --drain`): a write that lands late is not a write lost.
      return await deliver(deps, job.data, options.clock.now(), (data) => rt.redisBound('Redis (keeping a send in the job)', job.updateData(data), { timed: false }));
    } catch (error) {
      // `updateData` has put the sends it keeps in `job.data` too.
      if (job.attemptsMade + 1 < (job.opts.attempts ?? 1) || (job.data.unrecorded?.length ?? 0) === 0) throw error;
      // Dropped, the job would take with it the only record of a send that may have reached the
      // customer, and a later scan would find the step due again: it waits instead, as long as
      // PostgreSQL will not take the record (BullMQ counts no attempt for a job moved this way).
      const backoff = rt.config.retryBaseMs * 2 ** Math.max(0, (job.opts.attempts ?? 1) - 1);
      const waitMs = Math.min(Math.max(backoff, HELD_RETRY_MIN_MS), HELD_RETRY_MS);
      rt.logger.error({ jobId: job.id, opportunityId: job.data.opportunityId, stepId: job.data.stepId, err: (error as Error).message, retryInMs: waitMs },
        'the job\'s attempts are spent while it holds a send it could not record; it is kept and tried again, not dropped');
      // Moved only if this worker still holds the job's lock; then its data written again: a
      // write of the kept send that Redis refused earlier only logged (no worker takes the job
      // before the wait is over).
      await rt.redisBound('Redis (delaying the job)', job.moveToDelayed(Date.now() + waitMs, token), { timed: false });
      await rt.redisBound('Redis (keeping a send in the job)', job.updateData(job.data), { timed: false });
      options.onHeld?.(job, error as Error);
      throw new DelayedError();
    }
  };
  const running = options.running ?? { count: 0 };
  const worker = new Worker<DeliverJob, DeliverResult>(DELIVER_QUEUE, async (job, token) => {
    // Redis given up (the process stops without it): a job handed over is left as it is, nothing
    // sent, its lock left to lapse for a worker to take it again. Not failed (that would take an
    // attempt): BullMQ leaves a job that throws this where it is.
    if (rt.redisGivenUp) {
      rt.logger.info({ jobId: job.id }, 'a job handed over after Redis was given up is left as it is, for another worker once its lock lapses');
      throw new DelayedError();
    }
    running.count += 1;
    running.started = (running.started ?? 0) + 1;
    try {
      return await deliverOne(job, token);
    } catch (error) {
      // Given up with Redis meanwhile: the job is left as it is, not failed (its move to failed
      // would run if Redis came back before the exit, taking an attempt, or the job and what it
      // keeps with it).
      if (rt.redisGivenUp) throw new DelayedError();
      throw error;
    } finally {
      running.count -= 1;
    }
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
    // BullMQ fails a job that stalls more often than this (1 by default; the next worker to take
    // it fails it with an UnrecoverableError): it would take with it a send it keeps, unrecorded
    // (src/send-outcome.ts), and a later scan would send that again. A job that stalls only runs
    // again: the database refuses a second send.
    maxStalledCount: MAX_STALLS,
    // BullMQ's own counts of completed and failed jobs, for /metrics (`nudge_bullmq_job_completed_total`,
    // `nudge_bullmq_job_failed_total`), with a data point a minute for a day: each scrape reads them all.
    metrics: { maxDataPoints: MetricsTime.ONE_HOUR * 24 },
  });
  worker.on('failed', (job, err) => {
    // Its attempts spent, or stalled too often (BullMQ fails it at once, whatever attempts are left).
    const last = job !== undefined && (job.attemptsMade >= (job.opts.attempts ?? 1) || err.name === 'UnrecoverableError');
    const fields = { jobId: job?.id, attempts: job?.attemptsMade, err: err.message };
    const kept = (job?.data.unrecorded?.length ?? 0) > 0;
    // A deferred send was logged as such, with its ids and reply code: once is enough (in an SMTP
    // outage every job is deferred at each of its attempts). Jobs whose attempts an outage
    // outlasted are dropped together, each with the same error: a line a minute says so.
    if (err.name === DeferredError.name && !last) return;
    if (err.name === DeferredError.name && !kept) {
      deps.repeats('warn', 'delivery jobs failed for good while SMTP deferred them; dropped (a later scan enqueues their steps again while their windows are open)', fields);
      return;
    }
    // While PostgreSQL cannot be reached every job fails at each attempt, with the same error: a
    // line a minute says so, with how many were held back since, not a line per job.
    if (postgresUnreachable(err) && !kept) {
      deps.repeats('warn', last ? 'delivery jobs failed for good while PostgreSQL could not be reached; dropped (a later scan enqueues their steps again while their windows are open)'
        : 'delivery jobs fail while PostgreSQL cannot be reached; BullMQ retries each with backoff', fields);
      return;
    }
    if (!last) rt.logger.warn(fields, 'delivery job failed; BullMQ retries it with backoff');
    else if (!kept) rt.logger.warn(fields, 'delivery job failed for good; dropped (a later scan enqueues the step again while its window is open)');
    // The job goes (removeOnFail) with the send it kept: a later scan finds its step due.
    else rt.logger.error({ ...fields, opportunityId: job.data.opportunityId, stepId: job.data.stepId }, 'delivery job failed for good while it held a send it could not record; the step may be sent again');
  });
  worker.on('error', rt.redisError('delivery worker'));
  return worker;
}
