/**
 * Process wiring for the scan: a BullMQ job scheduler adds one scan job per interval, however many
 * processes run it; a Worker on that queue runs the pass. A PostgreSQL advisory lock inside
 * `runScan` keeps passes from overlapping if one runs longer than the interval.
 */
import { DelayedError, Worker } from 'bullmq';
import type { Clock } from '../src/clock.ts';
import type { LiveContent } from '../src/content.ts';
import { databaseOf } from '../src/db/database.ts';
import { runScan, type ScanSummary } from '../src/scan.ts';
import { SCAN_QUEUE, queuePrefix, scanQueue } from '../src/queue/queues.ts';
import type { Runtime } from '../src/runtime.ts';
import { superviseWorker } from './stall-watch.ts';

/** Milliseconds between the lines a scan still running logs (`scan under way`). */
const SCAN_PROGRESS_EVERY_MS = 10_000;

export const SCAN_SCHEDULER_ID = 'scan-every-interval';

export interface Scheduler {
  /** Whether a scan pass is running in this process. */
  readonly scanning: boolean;
  close(): Promise<void>;
}

export async function startScheduler(rt: Runtime, content: LiveContent, clock: Clock): Promise<Scheduler> {
  const queue = scanQueue(rt.redis, rt.config.queuePrefix);
  queue.on('error', rt.redisError('scan queue'));
  const upsert = () => queue.upsertJobScheduler(SCAN_SCHEDULER_ID, { every: rt.config.scanEveryMs }, {
    name: 'scan', data: {}, opts: { removeOnComplete: 100, removeOnFail: 100 },
  });
  await upsert();
  // Redis emptied (FLUSHALL, a failover to an empty replica) loses the scheduler with the jobs:
  // upserting it again every interval is idempotent and brings the scans back. The scans then
  // re-enqueue from PostgreSQL whatever is due and undecided.
  const keepAlive = setInterval(() => {
    upsert().catch((err) => rt.logger.warn({ err: (err as Error).message }, 'cannot upsert the scan scheduler; retrying next interval'));
  }, rt.config.scanEveryMs);
  let scanning = 0;
  let started = 0;
  const startWorker = () => {
    const worker = new Worker<object, ScanSummary>(SCAN_QUEUE, scan, { connection: rt.redis, prefix: queuePrefix(rt.config.queuePrefix, SCAN_QUEUE), concurrency: 1 });
    worker.on('error', rt.redisError('scan worker'));
    // `database`: which of DATABASE_URL and DATABASE_READ_URL failed, when it was one of them.
    worker.on('failed', (_job, err) => {
      rt.metrics.scanFailed();
      rt.logger.error({ err: err.message, database: databaseOf(err) }, 'scan failed; the next interval tries again');
    });
    return worker;
  };
  const scan = async (): Promise<ScanSummary> => {
    // Redis given up (the process stops without it): a scan job handed over is left as it is.
    if (rt.redisGivenUp) throw new DelayedError();
    scanning += 1;
    started += 1;
    try {
      await content.refresh();
      // A long scan (a big table, a slow database) says how far it got every so often.
      let loggedAt = Date.now();
      const onProgress = (s: Readonly<ScanSummary>) => {
        if (Date.now() - loggedAt < SCAN_PROGRESS_EVERY_MS) return;
        loggedAt = Date.now();
        rt.logger.info({ scanned: s.scanned, enqueued: s.enqueued, suppressed: s.suppressed }, 'scan under way');
      };
      const summary = await runScan(rt.scanDeps(content.journey), clock.now(), { waitForLock: false, onProgress });
      rt.logger.info(summary, summary.skipped ? 'scan skipped: another pass is running' : 'scan done');
      return summary;
    } catch (error) {
      if (!rt.redisGivenUp) throw error;
      // Given up with Redis as the process stops: the next scan, in whichever process, enqueues it all.
      rt.logger.info({ err: (error as Error).message }, 'scan cut short: the process stops without Redis');
      throw new DelayedError();
    } finally {
      scanning -= 1;
    }
  };
  const worker = superviseWorker(rt, {
    what: 'scan', start: startWorker, started: () => started, idle: () => scanning === 0,
    waiting: async () => (await queue.getJobCounts('wait')).wait ?? 0,
  });
  return {
    get scanning() {
      return scanning > 0;
    },
    async close() {
      clearInterval(keepAlive);
      await worker.close();
      await queue.close();
    },
  };
}
