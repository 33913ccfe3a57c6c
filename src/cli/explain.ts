import type { Command } from 'commander';
import { listDeliveries, type DeliveryRow } from '../db/deliveries.ts';
import { loadSnapshot } from '../db/snapshots.ts';
import { explainOpportunity, type StepExplanation } from '../explain.ts';
import { snapshotNeeds } from '../scan.ts';
import { clockFrom, EXIT, journeyFor, parseId, withRuntime } from './shared.ts';

export function registerExplain(program: Command): void {
  program.command('explain')
    .argument('<opportunityId>', 'the opportunity id')
    .description('show every step of an opportunity: due time, verdict and the rule behind it, and past decisions')
    .option('--now <iso>', 'judge as of this instant instead of the clock')
    .option('--json', 'print JSON instead of a table')
    .action((idText: string, opts: { now?: string; json?: boolean }) => withRuntime(async (rt) => {
      const id = parseId(idText, 'opportunityId');
      const now = clockFrom(opts.now).now();
      const journey = await journeyFor(rt, 'explain');
      const snapshot = await loadSnapshot(rt.db, id, snapshotNeeds(journey, now));
      const deliveries = await listDeliveries(rt.db, id);
      const steps = snapshot ? explainOpportunity(snapshot, journey, now) : [];
      if (opts.json) {
        console.log(JSON.stringify({ opportunityId: id, now: now.toISOString(), exists: snapshot !== null, steps, deliveries: deliveries.map(jsonRow) }, null, 2));
      } else {
        printTable(id, snapshot === null, now, steps, deliveries);
      }
      if (snapshot || deliveries.length > 0) return EXIT.ok;
      console.error(`nudge: opportunity ${id} does not exist, and no decision about it is recorded`);
      return EXIT.invalid;
    }, { sends: false }));
}

function jsonRow(row: DeliveryRow): Record<string, unknown> {
  return Object.fromEntries(Object.entries(row).map(([k, v]) => [k, v instanceof Date ? v.toISOString() : v]));
}

function printTable(id: number, missing: boolean, now: Date, steps: StepExplanation[], deliveries: DeliveryRow[]): void {
  console.log(missing ? `opportunity ${id} does not exist` : `opportunity ${id} as of ${now.toISOString()}`);
  for (const s of steps) {
    const verdict = s.reason ? `${s.verdict}: ${s.reason}` : s.verdict;
    console.log(`  ${s.stepId.padEnd(28)} ${(s.dueAt ?? '-').padEnd(24)} ${verdict}${s.detail ? ` — ${s.detail}` : ''}${s.recipient ? `  to ${s.recipient}` : ''}`);
    for (const c of s.checks) console.log(`      ${c.passed ? 'pass' : 'FAIL'}  ${c.rule.padEnd(16)} ${c.detail}`);
  }
  console.log(deliveries.length ? 'past decisions:' : 'no past decisions');
  for (const d of deliveries) {
    console.log(`  ${d.decided_at.toISOString()}  ${d.step_id.padEnd(28)} ${d.status}${d.reason ? `: ${d.reason}` : ''}${d.recipient ? `  to ${d.recipient}` : ''}${d.detail ? `  (${d.detail})` : ''}`);
  }
}
