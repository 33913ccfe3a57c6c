import type { Command } from 'commander';
import { runSimulation, type Simulation } from '../simulate.ts';
import { progressOnStderr } from './progress.ts';
import { clockFrom, journeyFor, wholeNumber, withRuntime } from './shared.ts';

export function registerSimulate(program: Command): void {
  program.command('simulate')
    .description('show the sends and suppressions the next N days would bring, day by day, on today\'s data; sends and writes nothing')
    .requiredOption('--days <n>', 'how many days to look ahead (1 to 366)')
    .option('--now <iso>', 'start from this instant instead of the clock')
    .option('--json', 'print JSON instead of a calendar')
    .action((opts: { days: string; now?: string; json?: boolean }) => withRuntime(async (rt) => {
      const days = wholeNumber(opts.days, '--days', 1, 366);
      const now = clockFrom(opts.now).now();
      const journey = await journeyFor(rt, 'simulate');
      const progress = progressOnStderr();
      const simulation = await runSimulation(rt.db, journey, now, days, (n) => progress.update(`read ${n} opportunities`))
        .finally(() => progress.done());
      if (opts.json) console.log(JSON.stringify(simulation, null, 2));
      else printCalendar(simulation);
    }, { sends: false }));
}

function printCalendar(s: Simulation): void {
  console.log(`from ${s.from}, days in ${s.timeZone}; nothing is sent or written`);
  let sends = 0;
  let suppressions = 0;
  for (const day of s.days) {
    sends += day.sends.length;
    suppressions += day.suppressions.length;
    if (day.sends.length + day.suppressions.length === 0) continue;
    console.log(`${day.date}: ${day.sends.length} sends, ${day.suppressions.length} suppressions`);
    // When it goes, and when it fell due if that was earlier (a step caught up, held by quiet hours or a cap).
    for (const x of day.sends) console.log(`  send      opportunity ${x.opportunityId}  ${x.stepId}  at ${x.at}${x.at === x.dueAt ? '' : ` (due ${x.dueAt})`}`);
    const reasons = new Map<string, number>();
    for (const x of day.suppressions) reasons.set(`${x.stepId}: ${x.reason}`, (reasons.get(`${x.stepId}: ${x.reason}`) ?? 0) + 1);
    for (const [what, n] of reasons) console.log(`  suppress  ${what} ×${n}`);
  }
  console.log(`total: ${sends} sends, ${suppressions} suppressions over ${s.days.length} days`);
}
