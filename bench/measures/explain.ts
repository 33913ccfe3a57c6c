/**
 * The scan's keyset page queries use their indexes: EXPLAIN (FORMAT JSON) of the exact query the
 * engine runs (`closingDatePage` / `stageEnteredPage` executed once, their SQL and parameters
 * captured as kysely compiled them) on the big table. PASS when the plan reads `opportunities`
 * through the named index with the row comparison in its Index Cond, with no sequential scan of
 * `opportunities` and no Filter on the keyset condition. The triage's read of one page's decisions
 * (`decisionsAtClosingDates`) PASSES when every scan of `deliveries` is an index scan of
 * `deliveries_by_closing_date` bounded at both ends in its Index Cond: a closing day and a range of
 * opportunity ids, or the days between two (a row comparison there bounds only the scan's start).
 */
import { CompiledQuery, sql } from 'kysely';
import { closingDatePage, stageEnteredPage } from '../../src/db/opportunities.ts';
import { decisionsAtClosingDates } from '../../src/db/snapshots.ts';
import { closingDateSpans, DEFAULT_PAGE_SIZE, SCAN_CHAINS } from '../../src/scan-pages.ts';
import type { BenchContext } from '../lib/context.ts';
import { loggingDb } from '../lib/raw-read.ts';

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Index Cond'?: string;
  Filter?: string;
  Plans?: PlanNode[];
}

export interface ExplainCheck {
  name: string;
  pass: boolean;
  problems: string[];
  /** Not part of PASS: whether pages come in index order (a Sort re-sorts the rest of the range for every page). */
  warnings: string[];
  plan: string[];
}

function walk(node: PlanNode, depth = 0, out: { node: PlanNode; depth: number }[] = []): { node: PlanNode; depth: number }[] {
  out.push({ node, depth });
  for (const child of node.Plans ?? []) walk(child, depth + 1, out);
  return out;
}

/** The plan, a line per node, indented by depth. */
function planLines(nodes: { node: PlanNode; depth: number }[]): string[] {
  return nodes.map(({ node, depth }) => `${'  '.repeat(depth)}${node['Node Type']}${node['Relation Name'] ? ` on ${node['Relation Name']}` : ''}`
    + `${node['Index Name'] ? ` using ${node['Index Name']}` : ''}${node['Index Cond'] ? ` [Index Cond: ${node['Index Cond']}]` : ''}${node.Filter ? ` [Filter: ${node.Filter}]` : ''}`);
}

function judge(name: string, root: PlanNode, index: string, keyset: RegExp, table = 'opportunities'): ExplainCheck {
  const nodes = walk(root);
  const problems: string[] = [];
  if (nodes.some(({ node }) => node['Node Type'] === 'Seq Scan' && node['Relation Name'] === table)) problems.push(`sequential scan of ${table}`);
  const scan = nodes.find(({ node }) => node['Index Name'] === index)?.node;
  if (!scan) problems.push(`index ${index} not used`);
  else {
    if (!keyset.test(scan['Index Cond'] ?? '')) problems.push('the row comparison is not in the Index Cond');
    if (keyset.test(scan.Filter ?? '')) problems.push('the row comparison is a Filter');
  }
  const warnings: string[] = [];
  if (scan && !/^Index (Only )?Scan$/.test(scan['Node Type'])) warnings.push(`${index} is read by a ${scan['Node Type']}, not in index order`);
  if (nodes.some(({ node }) => node['Node Type'] === 'Sort')) warnings.push('a Sort node: each page sorts the rest of the range');
  const plan = planLines(nodes);
  return { name, pass: problems.length === 0, problems, warnings, plan };
}

/**
 * Every scan of `table` reads `index` in a range its Index Cond bounds at both ends: one day
 * (`closing_date = `) with an opportunity id bound, or days after one and before another.
 */
function judgeBounded(name: string, root: PlanNode, index: string, table: string): ExplainCheck {
  const nodes = walk(root);
  const scans = nodes.filter(({ node }) => node['Relation Name'] === table).map(({ node }) => node);
  const problems: string[] = [];
  if (scans.length === 0) problems.push(`${table} is not read`);
  for (const scan of scans) {
    const cond = scan['Index Cond'] ?? '';
    if (scan['Index Name'] !== index) problems.push(`${table} read by a ${scan['Node Type']}, not through ${index}`);
    else if (!(/closing_date = /.test(cond) && /opportunity_id [<>]=/.test(cond)) && !(/closing_date > /.test(cond) && /closing_date < /.test(cond))) {
      problems.push(`a range of ${index} not bounded at both ends: ${cond}`);
    }
    if (scan.Filter) problems.push(`a Filter on ${table}: ${scan.Filter}`);
  }
  const plan = planLines(nodes);
  return { name, pass: problems.length === 0, problems, warnings: [], plan };
}

export async function explainChecks(ctx: BenchContext): Promise<ExplainCheck[]> {
  const { now } = ctx.settings;
  const today = now.toISOString().slice(0, 10);
  const spy = loggingDb(ctx.big.url);
  const explain = async (): Promise<PlanNode> => {
    const q = spy.last();
    if (!q) throw new Error('bench: no page query was captured');
    const { rows } = await ctx.big.db.executeQuery<{ 'QUERY PLAN': { Plan: PlanNode }[] }>(
      CompiledQuery.raw(`explain (format json) ${q.sql}`, [...q.parameters]));
    return rows[0]!['QUERY PLAN'][0]!.Plan;
  };
  try {
    // The scan reads spans of a few closing days, each a chain of its own (`closingDateSpans`): a
    // page of the span holding today, from a cursor some 2.5 % of the rows into it.
    const spans = closingDateSpans(ctx.journey, now, { chains: SCAN_CHAINS });
    const range = spans.find((s) => s.from <= today && today <= s.to) ?? spans[0] ?? { from: today, to: today };
    const skip = Math.floor(ctx.settings.bigRows / 40);
    const mid = await ctx.big.db.selectFrom('opportunities').select(['closing_date', 'id'])
      .where('closing_date', '>=', range.from).where('closing_date', '<=', range.to)
      .orderBy('closing_date').orderBy('id').offset(skip).limit(1).executeTakeFirst();
    const page = await closingDatePage(spy.db, range, { closingDate: mid?.closing_date ?? today, id: mid?.id ?? 0 }, DEFAULT_PAGE_SIZE);
    const closing = judge('closingDatePage (keyset page)', await explain(), 'opportunities_closing_scan',
      /ROW\((?:\w+\.)?closing_date, (?:\w+\.)?id\)\s*>/);
    const position = (r: (typeof page)[number] | undefined) => ({ closingDate: r?.closing_date ?? today, id: r?.id ?? 0 });
    await decisionsAtClosingDates(spy.db, position(page[0]), position(page[page.length - 1]));
    const decisions = judgeBounded('decisionsAtClosingDates (triage)', await explain(), 'deliveries_by_closing_date', 'deliveries');
    const entered = { from: new Date(now.getTime() - 7 * 86_400_000), to: new Date(now.getTime() + 86_400_000) };
    const midStage = await ctx.big.db.selectFrom('opportunities').select(['id', sql<string>`stage_entered_at::text`.as('cursor')]).where('stage', '=', 'proposal')
      .where('stage_entered_at', '>=', entered.from).where('stage_entered_at', '<=', entered.to)
      .orderBy('stage_entered_at').orderBy('id').offset(Math.floor(ctx.settings.bigRows / 400)).limit(1).executeTakeFirst();
    await stageEnteredPage(spy.db, 'proposal', entered, { stageEnteredAt: midStage?.cursor ?? entered.from.toISOString(), id: midStage?.id ?? 0 }, DEFAULT_PAGE_SIZE);
    const stage = judge('stageEnteredPage (keyset page)', await explain(), 'opportunities_stage_entered_scan',
      /ROW\((?:\w+\.)?stage_entered_at, (?:\w+\.)?id\)\s*>/);
    return [closing, decisions, stage];
  } finally {
    await spy.destroy();
  }
}
