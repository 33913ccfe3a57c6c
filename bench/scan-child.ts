/**
 * One scan in a process of its own, for the memory measure: `runScan` at BENCH_NOW over
 * DATABASE_URL with an enqueue that discards. Prints one JSON line: the peak resident set
 * (`process.resourceUsage().maxRSS`), the peak V8 heap (`heapUsed` sampled every 5 ms), and the
 * process's CPU time during the scan.
 *
 * With BENCH_WARMUP_URL a first scan runs there (the small table), unmeasured, and its decisions
 * are deleted: the measured one runs in a process that has scanned before, as the daemon's every
 * tick after its first does (and as the raw read it is compared with, in the bench's
 * long-running process). The memory measure uses children without it: one scan each.
 *
 * BENCH_SAMPLE_HEAP=0 leaves out the heap sampler (its peak is then only read before and after):
 * for the children whose speed is measured, which the sampler would slow (a few per cent of the
 * scan's CPU on a slow machine), while the raw read they are compared with runs without one.
 */
import path from 'node:path';
import { loadContent } from '../src/content.ts';
import { createDb, type Db } from '../src/db/database.ts';
import { listStages } from '../src/db/opportunities.ts';
import { createScanReadDb } from '../src/runtime.ts';
import { runScan } from '../src/scan.ts';
import { DEFAULT_PAGE_SIZE } from '../src/scan-pages.ts';
import { resetDecisions, scanDeps } from './lib/context.ts';
import { REPO } from './lib/settings.ts';

async function main(): Promise<void> {
  const url = process.env.DATABASE_URL;
  const now = new Date(process.env.BENCH_NOW ?? '');
  if (!url || Number.isNaN(now.getTime())) throw new Error('scan-child: DATABASE_URL and BENCH_NOW are required');
  const { db } = createDb(url, { max: 4, applicationName: 'nudge-bench-memory' });
  const readDb = createScanReadDb(url);
  try {
    const templatesDir = path.join(REPO, 'templates');
    const { content, problems } = loadContent({ templatesDir, journeysFile: path.join(templatesDir, 'journeys.yaml') }, await listStages(db));
    if (!content) throw new Error(problems.join('\n'));
    let peakHeap = process.memoryUsage().heapUsed;
    const before = { rss: process.memoryUsage().rss, heap: peakHeap };
    const sampler = process.env.BENCH_SAMPLE_HEAP === '0'
      ? undefined
      : setInterval(() => { peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed); }, 5);
    // The daemon's pools: the primary for the lock and the writes, the scan's own for its reads.
    const scan = (on: Db, readDb: Db) => runScan(scanDeps(on, content.journey, async () => 0, readDb),
      now, { pageSize: Number(process.env.BENCH_PAGE_SIZE ?? DEFAULT_PAGE_SIZE) });
    if (process.env.BENCH_WARMUP_URL) {
      const warm = createDb(process.env.BENCH_WARMUP_URL, { max: 4, applicationName: 'nudge-bench-warmup' }).db;
      const warmRead = createScanReadDb(process.env.BENCH_WARMUP_URL);
      try {
        await scan(warm, warmRead);
        await resetDecisions(warm, now);
      } finally {
        await warmRead.destroy();
        await warm.destroy();
      }
    }
    const cpu = process.cpuUsage();
    const summary = await scan(db, readDb);
    const { user, system } = process.cpuUsage(cpu);
    clearInterval(sampler);
    peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed);
    console.log(JSON.stringify({
      scanned: summary.scanned, ms: summary.ms, cpuMs: { user: user / 1000, system: system / 1000 },
      maxRssBytes: process.resourceUsage().maxRSS * 1024, peakHeapBytes: peakHeap,
      rssBeforeBytes: before.rss, heapBeforeBytes: before.heap,
    }));
  } finally {
    await readDb.destroy();
    await db.destroy();
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
