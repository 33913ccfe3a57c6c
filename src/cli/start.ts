import type { Command } from 'commander';
import { withRuntime } from './shared.ts';

export function registerStart(program: Command): void {
  program.command('start')
    .description('run the daemon: a scan every minute, delivery workers and the HTTP server (/healthz, /readyz, unsubscribe)')
    .option('--no-scheduler', 'do not scan (run workers only)')
    .option('--no-worker', 'do not deliver (scan and enqueue only)')
    .action((opts: { scheduler: boolean; worker: boolean }) => withRuntime(
      async (rt) => (await daemon()).runDaemon(rt, { scheduler: opts.scheduler, worker: opts.worker }),
      { logLevel: 'info' },
    ));
}

/**
 * The daemon's module, loaded by the commands that run it (`start`, `work`), not at the top: the
 * other commands need not load its HTTP server (fastify, Bull Board), 0.3 s of their start.
 */
export function daemon(): Promise<typeof import('../../workers/daemon.ts')> {
  return import('../../workers/daemon.ts');
}
