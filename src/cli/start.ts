import type { Command } from 'commander';
import { runDaemon } from '../../workers/daemon.ts';
import { withRuntime } from './shared.ts';

export function registerStart(program: Command): void {
  program.command('start')
    .description('run the daemon: a scan every minute, delivery workers and the HTTP server (/healthz, /readyz, /metrics, unsubscribe links, /board with NUDGE_BOARD_TOKEN)')
    .option('--no-scheduler', 'do not scan (run workers only)')
    .option('--no-worker', 'do not deliver (scan and enqueue only)')
    .action((opts: { scheduler: boolean; worker: boolean }) => withRuntime(
      (rt) => runDaemon(rt, { scheduler: opts.scheduler, worker: opts.worker }),
      { logLevel: 'info' },
    ));
}
