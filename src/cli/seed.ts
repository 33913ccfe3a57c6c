import type { Command } from 'commander';
import { seedDemo } from '../seed.ts';
import { seedMany } from '../seed-many.ts';
import { progressOnStderr } from './progress.ts';
import { clockFrom, UsageError, wholeNumber, withRuntime } from './shared.ts';

export function registerSeed(program: Command): void {
  program.command('seed')
    .description('write demo data: contacts and opportunities such as "Trip to the USA", dated from today')
    .option('--demo', 'the demo pipeline (required: it is the only data set)')
    .option('--opportunities <n>', 'also N generated opportunities (1 to 10000000), each with a contact, for trying Nudge at scale; each run adds N more')
    .option('--now <iso>', 'date the demo from this instant instead of the clock')
    .action((opts: { demo?: boolean; opportunities?: string; now?: string }) => withRuntime(async (rt) => {
      if (!opts.demo) throw new UsageError('seed needs --demo');
      const many = opts.opportunities === undefined ? 0 : wholeNumber(opts.opportunities, '--opportunities', 1, 10_000_000);
      const now = clockFrom(opts.now).now();
      const result = await seedDemo(rt.db, now);
      console.log(result.created
        ? `demo pipeline written: ${result.contacts} contacts, ${result.opportunities} opportunities`
        : 'demo pipeline already present; nothing written');
      if (many === 0) return;
      const progress = progressOnStderr();
      const generated = await seedMany(rt.db, now, many, (n) => progress.update(`written ${n} of ${many} opportunities`))
        .finally(() => progress.done());
      console.log(`generated: ${generated.contacts} contacts, ${generated.opportunities} opportunities`);
    }, { sends: false }));
}
