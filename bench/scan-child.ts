/**
 * One scan in a process of its own, for the memory measure: `runScan` at BENCH_NOW over
 * DATABASE_URL with an enqueue that discards. Prints one JSON line: the peak resident set
 * (`process.resourceUsage().maxRSS`) and the peak V8 heap (`heapUsed` sampled every 5 ms).
 */
import path from 'node:path';
import { loadContent } from '../src/content.ts';
import { createDb } from '../src/db/database.ts';
import { listStages } from '../src/db/opportunities.ts';
import { silentLogger } from '../src/logger.ts';
import { runScan } from '../src/scan.ts';
import { REPO } from './lib/settings.ts';

async function main(): Promise<void> {
  const url = process.env.DATABASE_URL;
  const now = new Date(process.env.BENCH_NOW ?? '');
  if (!url || Number.isNaN(now.getTime())) throw new Error('scan-child: DATABASE_URL and BENCH_NOW are required');
  const { db } = createDb(url, { max: 4, applicationName: 'nudge-bench-memory' });
  try {
    const templatesDir = path.join(REPO, 'templates');
    const { content, problems } = loadContent({ templatesDir, journeysFile: path.join(templatesDir, 'journeys.yaml') }, await listStages(db));
    if (!content) throw new Error(problems.join('\n'));
    let peakHeap = process.memoryUsage().heapUsed;
    const before = { rss: process.memoryUsage().rss, heap: peakHeap };
    const sampler = setInterval(() => { peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed); }, 5);
    const summary = await runScan({ db, journey: content.journey, enqueue: async () => {}, logger: silentLogger }, now, { pageSize: Number(process.env.BENCH_PAGE_SIZE ?? 500) });
    clearInterval(sampler);
    peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed);
    console.log(JSON.stringify({
      scanned: summary.scanned, ms: summary.ms,
      maxRssBytes: process.resourceUsage().maxRSS * 1024, peakHeapBytes: peakHeap,
      rssBeforeBytes: before.rss, heapBeforeBytes: before.heap,
    }));
  } finally {
    await db.destroy();
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
