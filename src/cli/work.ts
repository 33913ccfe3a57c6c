import type { Command } from 'commander';
import { ConfigError, configWarnings } from '../config.ts';
import { LiveContent } from '../content.ts';
import { listStages } from '../db/opportunities.ts';
import { drain, drainTotals } from '../../workers/drain.ts';
import { runDaemon } from '../../workers/daemon.ts';
import { clockFrom, EXIT, withRuntime } from './shared.ts';

export function registerWork(program: Command): void {
  program.command('work')
    .description('process delivery jobs until SIGTERM or SIGINT (workers only: no scans, no HTTP server); with --drain, every job that is ready, then exit, the last line a JSON summary')
    .option('--drain', 'exit once no job is waiting or active (jobs delayed for a retry are left for later)')
    .option('--now <iso>', 'judge time-based rules as of this instant instead of the clock')
    .action((opts: { drain?: boolean; now?: string }) => withRuntime(async (rt) => {
      const clock = clockFrom(opts.now);
      // Workers alone, as many processes as SMTP allows; `start --no-scheduler` is the same with
      // the HTTP server (health, readiness, metrics) on PORT.
      if (!opts.drain) return runDaemon(rt, { scheduler: false, worker: true, http: false, clock });
      // As the daemon says at its start: where the emails go when SMTP_URL is not set, and the secret.
      for (const w of configWarnings(rt.config)) rt.logger.warn(w);
      const content = new LiveContent(await rt.content(), rt.config, () => listStages(rt.db), rt.logger);
      // What REDIS_URL wrongly names stops the command; a Redis that does not answer ends it with
      // the summary saying so, as when it stops answering during the drain.
      const unanswered = await rt.checkRedisUrl().then(() => null, (error: unknown) => {
        if (error instanceof ConfigError) throw error;
        return (error as Error).message;
      });
      const t = unanswered === null ? await drain(rt, { clock, content, mailer: rt.mailer() }) : drainTotals(unanswered);
      console.log(`processed ${t.jobs} jobs: ${t.sent} sent, ${t.suppressed} suppressed, ${t.failed} failed, ${t.unknown} unknown, ${t.skipped} skipped, ${t.retrying} to retry later`);
      console.log(JSON.stringify(t));
      if (t.unreachable) {
        console.error(`nudge: cannot reach Redis (is it running? check REDIS_URL, or raise NUDGE_REDIS_WAIT_MS): ${t.unreachable}; jobs may be left, and are taken again later`);
        return EXIT.infrastructure;
      }
      if (t.infrastructureErrors > 0) {
        console.error(`nudge: ${t.infrastructureErrors} jobs failed on PostgreSQL or Redis (see the log); they are retried`);
        return EXIT.infrastructure;
      }
    }, opts.drain ? { oneShot: true } : { logLevel: 'info' }));
}
