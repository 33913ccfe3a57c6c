import type { Command } from 'commander';
import { LiveContent } from '../content.ts';
import { listStages } from '../db/opportunities.ts';
import type { DeliverResult } from '../deliver.ts';
import { startDeliverWorker } from '../../workers/deliver-worker.ts';
import { clockFrom, UsageError, withRuntime } from './shared.ts';

export function registerWork(program: Command): void {
  program.command('work')
    .description('process delivery jobs: with --drain, every job that is ready, then exit; last line is a JSON summary')
    .option('--drain', 'exit once no job is waiting or active (jobs delayed for a retry are left for later)')
    .option('--now <iso>', 'judge time-based rules as of this instant instead of the clock')
    .action((opts: { drain?: boolean; now?: string }) => withRuntime(async (rt) => {
      if (!opts.drain) throw new UsageError('work needs --drain (to run workers continuously, use `nudge start --no-scheduler`)');
      const clock = clockFrom(opts.now);
      const content = new LiveContent(await rt.content(), rt.config, () => listStages(rt.db), rt.logger);
      const totals = { jobs: 0, sent: 0, suppressed: 0, failed: 0, unknown: 0, skipped: 0, retrying: 0 };
      const worker = startDeliverWorker(rt, { clock, content, mailer: rt.mailer() });
      worker.on('completed', (_job, r: DeliverResult) => {
        totals.jobs += 1;
        for (const k of ['sent', 'suppressed', 'failed', 'unknown', 'skipped'] as const) totals[k] += r[k];
      });
      worker.on('failed', () => { totals.jobs += 1; totals.retrying += 1; });
      await waitUntilDrained(rt.queue);
      await worker.close();
      console.log(`processed ${totals.jobs} jobs: ${totals.sent} sent, ${totals.suppressed} suppressed, ${totals.failed} failed, ${totals.unknown} unknown, ${totals.retrying} to retry later`);
      console.log(JSON.stringify(totals));
    }));
}

async function waitUntilDrained(queue: { getJobCounts(...types: string[]): Promise<Record<string, number>> }): Promise<void> {
  // Two quiet looks in a row: a job moving from waiting to active is never seen as "nothing left".
  let quiet = 0;
  while (quiet < 2) {
    await new Promise((r) => setTimeout(r, 100));
    const c = await queue.getJobCounts('waiting', 'active', 'prioritized', 'paused');
    quiet = (c.waiting ?? 0) + (c.active ?? 0) + (c.prioritized ?? 0) + (c.paused ?? 0) === 0 ? quiet + 1 : 0;
  }
}
