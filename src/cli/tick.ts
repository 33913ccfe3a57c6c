import type { Command } from 'commander';
import { runScan } from '../scan.ts';
import { progressOnStderr } from './progress.ts';
import { clockFrom, withRuntime } from './shared.ts';

export function registerTick(program: Command): void {
  program.command('tick')
    .description('run one scheduler pass: record suppressions, enqueue the sends that are due; last line is a JSON summary')
    .option('--now <iso>', 'judge as of this instant (e.g. 2026-12-01T09:00:00Z) instead of the clock')
    .action((opts: { now?: string }) => withRuntime(async (rt) => {
      const now = clockFrom(opts.now).now();
      const { journey } = await rt.content();
      await rt.checkRedisUrl();
      const progress = progressOnStderr();
      const onProgress = (s: { scanned: number; enqueued: number }) => progress.update(`scanned ${s.scanned}, enqueued ${s.enqueued}`);
      const summary = await runScan(rt.scanDeps(journey), now, { waitForLock: true, onProgress }).finally(() => progress.done());
      console.log(`scanned ${summary.scanned} opportunities as of ${now.toISOString()}: ${summary.enqueued} sends enqueued, ${summary.suppressed} suppressions recorded${summary.errors ? `, ${summary.errors} opportunities could not be evaluated (see the log)` : ''}`);
      console.log(JSON.stringify({ now: now.toISOString(), scanned: summary.scanned, enqueued: summary.enqueued, suppressed: summary.suppressed, errors: summary.errors, ms: summary.ms }));
    }, { oneShot: true }));
}
