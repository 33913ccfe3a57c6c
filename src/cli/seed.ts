import type { Command } from 'commander';
import { seedDemo } from '../seed.ts';
import { clockFrom, UsageError, withRuntime } from './shared.ts';

export function registerSeed(program: Command): void {
  program.command('seed')
    .description('write demo data: contacts and opportunities such as "Trip to the USA", dated from today')
    .option('--demo', 'the demo pipeline (required: it is the only data set)')
    .option('--now <iso>', 'date the demo from this instant instead of the clock')
    .action((opts: { demo?: boolean; now?: string }) => withRuntime(async (rt) => {
      if (!opts.demo) throw new UsageError('seed needs --demo');
      const result = await seedDemo(rt.db, clockFrom(opts.now).now());
      console.log(result.created
        ? `demo pipeline written: ${result.contacts} contacts, ${result.opportunities} opportunities`
        : 'demo pipeline already present; nothing written');
    }));
}
