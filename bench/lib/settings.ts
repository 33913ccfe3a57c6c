/**
 * What one bench run works with, read once from the environment. The defaults are issue 5's
 * sizes; `BENCH_SCALE=0.1` shrinks every row and job count for a quick run while developing.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface BenchSettings {
  /** Multiplies every size below. @defaultValue 1 */
  scale: number;
  /**
   * Alternating (baseline, subject) pairs per measure; at least 3. @defaultValue 5: on two shared
   * cores one pair's ratio strays by a tenth either way, and the median of three still followed it.
   */
  pairs: number;
  /** Opportunities of the big table (scan, tick, memory, EXPLAIN). @defaultValue 1,000,000 */
  bigRows: number;
  /** Opportunities of the small table (memory baseline, simulate). @defaultValue 100,000 */
  smallRows: number;
  /** Emails per end-to-end run. @defaultValue 1,000 */
  emails: number;
  /** Seconds of open-loop arrivals per latency run. @defaultValue 10 */
  latencySeconds: number;
  /** The instant every tick, job and simulation is judged at (a Tuesday, 10:00 UTC). */
  now: Date;
  /** PostgreSQL server to create the bench databases on (any database of it). */
  adminUrl: string;
  redisUrl: string;
  /**
   * SQL run on both databases after the migrations (BENCH_EXTRA_SQL), to measure a what-if such
   * as an index before writing its migration. @defaultValue null
   */
  extraSql: string | null;
}

function number(name: string, fallback: number, min: number): number {
  const raw = process.env[name]?.trim();
  if (!raw) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min) throw new Error(`${name} must be a number >= ${min}, got ${JSON.stringify(raw)}`);
  return n;
}

export function loadSettings(): Readonly<BenchSettings> {
  const scale = number('BENCH_SCALE', 1, 0.001);
  const now = new Date(process.env.BENCH_NOW ?? '2026-12-01T10:00:00Z');
  if (Number.isNaN(now.getTime())) throw new Error('BENCH_NOW must be an ISO instant');
  return Object.freeze({
    scale,
    pairs: Math.max(3, Math.round(number('BENCH_PAIRS', 5, 3))),
    bigRows: Math.round(1_000_000 * scale),
    smallRows: Math.round(100_000 * scale),
    emails: Math.max(200, Math.round(number('BENCH_EMAILS', 1_000, 1) * Math.min(1, scale * 5))),
    latencySeconds: number('BENCH_LATENCY_SECONDS', 10, 1),
    now,
    adminUrl: process.env.BENCH_DATABASE_ADMIN_URL ?? process.env.TEST_DATABASE_ADMIN_URL ?? 'postgres://root@127.0.0.1:5432/postgres',
    redisUrl: process.env.BENCH_REDIS_URL ?? process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
    extraSql: process.env.BENCH_EXTRA_SQL?.trim() || null,
  });
}
