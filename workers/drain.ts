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

export interface DrainTotals extends DeliverResult {
  jobs: number;
  /** Jobs that failed this time (SMTP deferred, database down) and wait for a retry. */
  retrying: number;
  /** Of those, failures of PostgreSQL or Redis (not SMTP deferrals): `work` exits non-zero. */
  infrastructureErrors: number;
}

export async function drain(rt: Runtime, options: { clock: Clock; content: LiveContent; mailer: Mailer }): Promise<DrainTotals> {
  const totals: DrainTotals = { jobs: 0, sent: 0, suppressed: 0, failed: 0, unknown: 0, skipped: 0, retrying: 0, infrastructureErrors: 0 };
  // A job moved to wait again rather than dropped (it holds a send it could not record) failed
  // this time all the same.
  const failed = (err: Error) => {
    totals.jobs += 1;
    totals.retrying += 1;
    if (!(err instanceof DeferredError)) totals.infrastructureErrors += 1;
  };
  const worker = startDeliverWorker(rt, { ...options, onHeld: (_job, err) => failed(err) });
  worker.on('completed', (_job, r: DeliverResult) => {
    totals.jobs += 1;
    for (const k of ['sent', 'suppressed', 'failed', 'unknown', 'skipped'] as const) totals[k] += r[k];
  });
  worker.on('failed', (_job, err) => failed(err));
  // Two quiet looks in a row: a job moving from waiting to active is never seen as "nothing left".
  let quiet = 0;
  while (quiet < 2) {
    await new Promise((r) => setTimeout(r, 50));
    const c = await rt.queue.getJobCounts('waiting', 'active', 'prioritized', 'paused');
    quiet = (c.waiting ?? 0) + (c.active ?? 0) + (c.prioritized ?? 0) + (c.paused ?? 0) === 0 ? quiet + 1 : 0;
  }
  // Nothing is waiting or active: closing only disconnects. Bounded all the same (BullMQ's close
  // has been seen to hang on a Redis Cluster once every job was done), so `work --drain` exits.
  await within(CLOSE_WAIT_MS, 'the delivery worker to close', worker.close()).catch(async (err: Error) => {
    rt.logger.warn({ err: err.message }, 'the delivery worker did not close; disconnecting it');
    await worker.disconnect().catch(() => {});
  });
  return totals;
}
