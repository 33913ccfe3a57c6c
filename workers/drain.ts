/**
 * `work --drain`: process every delivery job that is ready, then stop once nothing is waiting or
 * active. Jobs delayed for a retry are left for later.
 */
import type { Clock } from '../src/clock.ts';
import type { LiveContent } from '../src/content.ts';
import { DeferredError, type DeliverResult } from '../src/deliver.ts';
import type { Mailer } from '../src/email/mailer.ts';
import type { Runtime } from '../src/runtime.ts';
import { within } from '../src/settle.ts';
import { startDeliverWorker } from './deliver-worker.ts';

/** Longer than a job started just before the close can take (a send's SMTP timeouts). */
const CLOSE_WAIT_MS = 60_000;
/** With Redis gone, for the jobs being delivered to end (their sends recorded in PostgreSQL): the daemon's grace. */
const CLOSE_WITHOUT_REDIS_MS = 20_000;

export interface DrainTotals extends DeliverResult {
  jobs: number;
  /** Jobs that failed this time (SMTP deferred, database down) and wait for a retry. */
  retrying: number;
  /** Of those, failures of PostgreSQL or Redis (not SMTP deferrals): `work` exits non-zero. */
  infrastructureErrors: number;
  /** What did not answer in time (Redis, after `rt.redisWaitMs`) when the drain stopped early; else null. */
  unreachable: string | null;
}

/** A drain that has done nothing yet; with `unreachable`, one that could not start. */
export function drainTotals(unreachable: string | null = null): DrainTotals {
  return { jobs: 0, sent: 0, suppressed: 0, failed: 0, unknown: 0, skipped: 0, retrying: 0, infrastructureErrors: 0, unreachable };
}

export async function drain(rt: Runtime, options: { clock: Clock; content: LiveContent; mailer: Mailer }): Promise<DrainTotals> {
  const totals = drainTotals();
  // A job moved to wait again rather than dropped (it holds a send it could not record) failed
  // this time all the same.
  const failed = (err: Error) => {
    totals.jobs += 1;
    totals.retrying += 1;
    if (!(err instanceof DeferredError)) totals.infrastructureErrors += 1;
  };
  const running = { count: 0 };
  const worker = startDeliverWorker(rt, { ...options, onHeld: (_job, err) => failed(err), running });
  worker.on('completed', (_job, r: DeliverResult) => {
    totals.jobs += 1;
    for (const k of ['sent', 'suppressed', 'failed', 'unknown', 'skipped'] as const) totals[k] += r[k];
  });
  worker.on('failed', (_job, err) => failed(err));
  try {
    // Two quiet looks in a row: a job moving from waiting to active is never seen as "nothing left".
    // Each look is bounded (`rt.redisWaitMs`): with Redis gone, the drain stops, and says so.
    let quiet = 0;
    while (quiet < 2) {
      await new Promise((r) => setTimeout(r, 50));
      const c = await rt.redisBound('Redis (counting jobs)', rt.queue.getJobCounts('waiting', 'active', 'prioritized', 'paused'));
      quiet = (c.waiting ?? 0) + (c.active ?? 0) + (c.prioritized ?? 0) + (c.paused ?? 0) === 0 ? quiet + 1 : 0;
    }
  } catch (error) {
    totals.unreachable = (error as Error).message;
    rt.logger.error({ err: totals.unreachable }, 'work --drain: Redis does not answer; stopping with the jobs being delivered finished');
  }
  if (totals.unreachable) {
    // The jobs being delivered end in PostgreSQL (their BullMQ moves never come: once Redis is
    // back, their locks lapse and they run again, finding their steps decided); then the worker
    // goes without waiting for Redis.
    // No job handed over from now on starts (Redis back meanwhile), and a job's writes to its data
    // fail at once rather than hold the exit.
    rt.abandonRedis();
    const end = Date.now() + CLOSE_WITHOUT_REDIS_MS;
    while (running.count > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    void worker.close(true).catch(() => {});
    await within(DISCONNECT_WAIT_MS, 'the delivery worker to disconnect', worker.disconnect()).catch(() => {});
    return totals;
  }
  // Nothing is waiting or active: closing only disconnects. Bounded all the same (BullMQ's close
  // has been seen to hang on a Redis Cluster once every job was done), so `work --drain` exits.
  await within(CLOSE_WAIT_MS, 'the delivery worker to close', worker.close()).catch((err: Error) => {
    // Not disconnected: a connection closed under a worker whose close is under way has it try its
    // failed commands again at once, for ever (src/runtime.ts, `abandonRedis`). Left to the exit.
    rt.logger.warn({ err: err.message }, 'the delivery worker did not close; leaving Redis to the exit');
    rt.abandonRedis();
  });
  return totals;
}

const DISCONNECT_WAIT_MS = 1_000;
