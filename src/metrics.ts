/**
 * Prometheus metrics, all named `nudge_*`. Each process exposes its own on `/metrics`; sum them in
 * Prometheus. Labels carry reasons and statuses, never people.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { FAILURE_REASONS, SUPPRESSION_REASONS } from './journey/types.ts';
import { within } from './settle.ts';

/** How long a scrape waits for Redis's answers before leaving them out: a scrape must not hang. */
export const SCRAPE_WAIT_MS = 2_000;

export interface Metrics {
  /** One decision written (or a send's outcome): status sent | suppressed | failed | unknown. */
  decision(status: string, reason: string | null): void;
  /** Seconds from a step's due time to the server's acceptance. */
  dueToSent(seconds: number): void;
  /** One scan pass. */
  scan(summary: { scanned: number; enqueued: number; suppressed: number; ms: number }): void;
  /** A send SMTP deferred (4xx, refused, timeout): the job is retried. */
  deferred(): void;
  /** A scan pass that failed (its database, Redis): the next interval tries again. */
  scanFailed(): void;
}

export const noMetrics: Metrics = { decision() {}, dueToSent() {}, scan() {}, deferred() {}, scanFailed() {} };

export interface PrometheusMetrics extends Metrics {
  registry: Registry;
}

/** `queueCounts` is read at scrape time (queue depth by state). */
export function prometheusMetrics(queueCounts: () => Promise<Record<string, number>>): PrometheusMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'nudge_process_' });
  const decisions = new Counter({ name: 'nudge_decisions_total', help: 'Decisions written to deliveries, by status and reason', labelNames: ['status', 'reason'], registers: [registry] });
  // Every status and reason from zero, not from its first decision: `increase()` and alerts on
  // the first `unknown` or `smtp_rejected` of a process see it.
  for (const [status, reason] of [['sent', ''], ['unknown', ''], ...FAILURE_REASONS.map((r) => ['failed', r]), ...SUPPRESSION_REASONS.map((r) => ['suppressed', r])]) {
    decisions.inc({ status, reason }, 0);
  }
  const deferrals = new Counter({ name: 'nudge_smtp_deferred_total', help: 'Sends deferred by SMTP (4xx, refused, timeout) and retried', registers: [registry] });
  const latency = new Histogram({ name: 'nudge_due_to_sent_seconds', help: 'Seconds from due time to acceptance by SMTP', buckets: [1, 5, 15, 30, 60, 120, 300, 900, 3600, 14400, 86400], registers: [registry] });
  const scanSeconds = new Histogram({ name: 'nudge_scan_duration_seconds', help: 'Duration of one scan pass', buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120], registers: [registry] });
  const scanned = new Counter({ name: 'nudge_scan_opportunities_total', help: 'Opportunities read by scans', registers: [registry] });
  const enqueued = new Counter({ name: 'nudge_scan_enqueued_total', help: 'Send jobs added to the queue by scans (not those already in it)', registers: [registry] });
  // What an alert on a scan that no longer runs needs, in whichever process runs it: the failures
  // (a replica that cannot be read, Redis refusing), and when one last ended well.
  const scanFailures = new Counter({ name: 'nudge_scan_failures_total', help: 'Scan passes that failed (the next interval tries again)', registers: [registry] });
  const lastScan = new Gauge({ name: 'nudge_scan_last_success_timestamp_seconds', help: 'When a scan pass of this process last ended well (Unix time); 0 before the first', registers: [registry] });
  // One read of Redis per scrape, shared by the two gauges that show it (a registry collects its
  // metrics at once): null when Redis did not answer within the scrape's wait.
  let reading: Promise<Record<string, number> | null> | null = null;
  const readCounts = () => (reading ??= within(SCRAPE_WAIT_MS, 'Redis', queueCounts())
    .catch(() => null)
    .finally(() => { reading = null; }));
  new Gauge({
    name: 'nudge_redis_up', help: 'Whether Redis answered the scrape\'s read of the queue in time (1) or not (0)', registers: [registry],
    async collect() {
      this.set((await readCounts()) ? 1 : 0);
    },
  });
  new Gauge({
    name: 'nudge_queue_jobs', help: 'Delivery jobs in the queue, by state; absent while Redis does not answer', labelNames: ['state'], registers: [registry],
    async collect() {
      const counts = await readCounts();
      // Redis down or not answering: no figure rather than the last one, which would look current
      // to a dashboard or to an alert on the queue's depth; `nudge_redis_up` says why.
      if (!counts) return this.reset();
      for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
    },
  });
  return {
    registry,
    decision: (status, reason) => decisions.inc({ status, reason: reason ?? '' }),
    dueToSent: (seconds) => latency.observe(Math.max(0, seconds)),
    scan(s) {
      scanSeconds.observe(s.ms / 1000);
      scanned.inc(s.scanned);
      enqueued.inc(s.enqueued);
      lastScan.set(Date.now() / 1000);
    },
    deferred: () => deferrals.inc(),
    scanFailed: () => scanFailures.inc(),
  };
}
