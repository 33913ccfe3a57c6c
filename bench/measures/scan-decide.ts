/**
 * Scan + decide, and the scanner's peak memory, from the same runs (each 1M-row scan costs
 * minutes while the scan is slow, so one set of runs serves both measures):
 *
 * - scan + decide, rows/s: `runScan` at `now` with an enqueue that discards, in a child process
 *   (`bench/scan-child.ts`; rows scanned / runScan's own duration), against a raw `pg-cursor`
 *   read of the same rows in this process. That child first scans the small table, unmeasured
 *   (its decisions then deleted): the measured scan runs warm, as the daemon's do after its first
 *   tick and as the raw read does in this long-running process;
 * - peak memory: a cold child's peak resident set (maxRSS, which includes Node, tsx and the
 *   loaded modules), one scan of the big table against one of the small one, so that each peak
 *   is one scan's own; the peak sampled V8 heap is printed beside it, being the part that would
 *   grow if the scan held rows.
 *
 * Each pair runs: raw read (big), cold child (small), cold child (big), warm child (big). Every
 * scan starts with this run's decisions deleted, so it writes its suppressions as a first tick
 * does.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { DEFAULT_PAGE_SIZE, forEachScanPage, SCAN_CHAINS } from '../../src/scan-pages.ts';
import { resetDecisions, seconds, type BenchContext } from '../lib/context.ts';
import { capturingDb, cursorRead, rawClient, unlimited, type CapturedQuery } from '../lib/raw-read.ts';
import { REPO } from '../lib/settings.ts';
import { median, type Measure } from '../lib/stats.ts';

/** The engine's own page size; the raw read fetches as many rows at a time. */
export const PAGE_SIZE = DEFAULT_PAGE_SIZE;
const MB = 1024 * 1024;
const run = promisify(execFile);

/** The scan's page queries at `now` (first pages, limit lifted): the raw read of the same rows. */
export async function scanQueries(ctx: BenchContext, url: string, horizonDays = 0, pageSize = PAGE_SIZE, chains = SCAN_CHAINS): Promise<CapturedQuery[]> {
  const capture = capturingDb(url);
  try {
    await forEachScanPage(capture.db, ctx.journey, ctx.settings.now, { pageSize, horizonDays, chains }, async () => {});
  } finally {
    await capture.destroy();
  }
  return capture.queries.map((q) => unlimited(q, pageSize));
}

export interface ChildResult {
  scanned: number;
  ms: number;
  /** CPU time of the child's process during the measured scan (not PostgreSQL's). */
  cpuMs: { user: number; system: number };
  maxRssBytes: number;
  peakHeapBytes: number;
}

/** One scan in a child process; `warm`: after an unmeasured scan of the small table. */
export async function scanInChild(ctx: BenchContext, url: string, warm: boolean): Promise<ChildResult> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', path.join(REPO, 'bench/scan-child.ts')], {
    cwd: REPO, env: {
      ...process.env, DATABASE_URL: url, BENCH_NOW: ctx.settings.now.toISOString(), BENCH_PAGE_SIZE: String(PAGE_SIZE),
      BENCH_WARMUP_URL: warm ? ctx.small.url : '',
      // The warm child is timed, and its heap is not reported: no sampler slowing it.
      BENCH_SAMPLE_HEAP: warm ? '0' : '1',
    },
    maxBuffer: 1 << 20,
  });
  return JSON.parse(stdout.trim().split('\n').pop()!) as ChildResult;
}

export async function measureScanAndMemory(ctx: BenchContext, log: (line: string) => void): Promise<{ scan: Measure; memory: Measure }> {
  const { now, pairs, bigRows, smallRows } = ctx.settings;
  const queries = await scanQueries(ctx, ctx.big.url);
  const client = await rawClient(ctx.big.url);
  const raw: { rows: number; rate: number }[] = [];
  const small: ChildResult[] = [];
  const big: ChildResult[] = [];
  const warm: ChildResult[] = [];
  try {
    for (let i = 0; i < pairs; i++) {
      const t = performance.now();
      const rows = await cursorRead(client, queries, PAGE_SIZE);
      raw.push({ rows, rate: rows / seconds(t) });
      await resetDecisions(ctx.small.db, now);
      small.push(await scanInChild(ctx, ctx.small.url, false));
      await resetDecisions(ctx.big.db, now);
      big.push(await scanInChild(ctx, ctx.big.url, false));
      await resetDecisions(ctx.big.db, now);
      warm.push(await scanInChild(ctx, ctx.big.url, true));
      log(`pair ${i + 1}: raw read ${rows} rows in ${(rows / raw[i]!.rate).toFixed(2)} s; scan of ${warm[i]!.scanned} rows in ${(warm[i]!.ms / 1000).toFixed(1)} s warm, ${(big[i]!.ms / 1000).toFixed(1)} s cold`);
    }
  } finally {
    await client.end();
  }
  const rates = warm.map((r) => r.scanned / (r.ms / 1000));
  const cold = median(big.map((r) => r.scanned / (r.ms / 1000)));
  const heap = (rs: ChildResult[]) => median(rs.map((r) => r.peakHeapBytes / MB));
  const scanned = warm[0]?.scanned ?? 0;
  const rawRows = raw[0]?.rows ?? 0;
  return {
    scan: {
      key: 'scan', title: `scan + decide, ${bigRows.toLocaleString('en-US')} opportunities`, unit: 'rows/s',
      subjectName: 'runScan (enqueue discards)', baselineName: 'pg-cursor read',
      baseline: raw.map((r) => r.rate), subject: rates, ratios: rates.map((s, i) => s / raw[i]!.rate),
      goal: { op: '>=', value: 0.5 },
      notes: [
        `rows per pass: the scan read ${scanned}, the raw read ${rawRows}${scanned === rawRows ? ' (the same rows)' : ` (${scanned - rawRows} more: rows read twice by the scan)`}, of ${bigRows} opportunities`,
        `the scans measured ran warm (a child that scanned the small table first); the cold children of the memory measure scanned at a median ${Math.round(cold).toLocaleString('en-US')} rows/s (ratio ${(cold / median(raw.map((r) => r.rate))).toFixed(3)} to the median raw read)`,
        `the warm children's own CPU during the scan, median: ${(median(warm.map((r) => r.cpuMs.user + r.cpuMs.system)) / 1000).toFixed(2)} s over ${(median(warm.map((r) => r.ms)) / 1000).toFixed(2)} s (PostgreSQL's is not counted)`,
      ],
    },
    memory: {
      key: 'memory', title: `scanner peak memory, ${bigRows.toLocaleString('en-US')} vs ${smallRows.toLocaleString('en-US')} rows`,
      unit: 'MB maxRSS', subjectName: `${bigRows} rows`, baselineName: `${smallRows} rows`,
      baseline: small.map((r) => r.maxRssBytes / MB), subject: big.map((r) => r.maxRssBytes / MB),
      ratios: big.map((r, i) => r.maxRssBytes / small[i]!.maxRssBytes),
      goal: { op: '<=', value: 1.3 },
      notes: [
        `rows scanned: ${scanned} vs ${small[0]?.scanned}; peak heapUsed (sampled every 5 ms), median ${heap(big).toFixed(1)} MB vs ${heap(small).toFixed(1)} MB (ratio ${(heap(big) / heap(small)).toFixed(2)})`,
      ],
    },
  };
}
