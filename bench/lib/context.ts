/** What every measure shares: the databases, the runtime, the journey, the sink, and the resets between runs. */
import { Queue } from 'bullmq';
import { sql } from 'kysely';
import type { Content } from '../../src/content.ts';
import type { Db } from '../../src/db/database.ts';
import type { Journey } from '../../src/journey/types.ts';
import { silentLogger } from '../../src/logger.ts';
import { queuePrefix, type DeliverJob } from '../../src/queue/queues.ts';
import type { Runtime } from '../../src/runtime.ts';
import type { ScanDeps } from '../../src/scan.ts';
import type { BenchDatabase } from './services.ts';
import type { BenchSettings } from './settings.ts';
import type { BenchSink } from './smtp-sink.ts';

export const BASELINE_QUEUE = 'bench-baseline';

export interface BenchContext {
  settings: Readonly<BenchSettings>;
  big: BenchDatabase;
  small: BenchDatabase;
  prefix: string;
  sink: BenchSink;
  /** The engine on the big database. */
  rt: Runtime;
  content: Content;
  journey: Journey;
  /** A queue beside the engine's, for the `addBulk` of empty jobs. */
  baselineQueue: Queue;
  /** The send jobs a first tick over the big table produces (filled by the scan measure). */
  jobs: { id: string; data: DeliverJob }[];
}

export function makeBaselineQueue(rt: Runtime, prefix: string): Queue {
  return new Queue(BASELINE_QUEUE, { connection: rt.redis, prefix: queuePrefix(prefix, BASELINE_QUEUE) });
}

/** The scan's dependencies with an `enqueue` of our choosing; pages read through `readDb` when given (the daemon's own pool). */
export function scanDeps(db: Db, journey: Journey, enqueue: ScanDeps['enqueue'], readDb?: Db): ScanDeps {
  return { db, journey, enqueue, logger: silentLogger, ...(readDb ? { readDb } : {}) };
}

/** Forgets every decision made at or after `now` (the bench's own), keeping the generated history. */
export async function resetDecisions(db: Db, now: Date): Promise<void> {
  await db.deleteFrom('deliveries').where('decided_at', '>=', now).execute();
  await sql`vacuum deliveries`.execute(db);
}

/** Empties a queue (waiting, active, delayed, finished) and leaves it running. */
export async function emptyQueue(queue: Queue): Promise<void> {
  await queue.obliterate({ force: true });
  await queue.resume();
}

export async function waitingJobs(queue: Queue): Promise<number> {
  const c = await queue.getJobCounts('waiting', 'prioritized', 'delayed', 'paused', 'active');
  return Object.values(c).reduce((a, b) => a + b, 0);
}

export function seconds(started: number): number {
  return (performance.now() - started) / 1000;
}
