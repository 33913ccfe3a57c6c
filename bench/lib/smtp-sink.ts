/**
 * An SMTP server on loopback, in this process, that only counts: each message's arrival time
 * (the end of DATA, before the 250 reply) keyed by its X-Nudge-Opportunity and X-Nudge-Step
 * headers. Nothing is parsed beyond the header block, so the sink costs both paths the same.
 */
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';

export interface BenchSink {
  url: string;
  /** Messages received since the last reset. */
  count(): number;
  /** performance.now() of each message's arrival, by `<opportunityId>.<stepId>`. */
  arrivals: Map<string, number>;
  /** performance.now() of the latest arrival. */
  lastArrival(): number;
  reset(): void;
  /** Resolves when `n` messages arrived since the last reset; rejects after `timeoutMs`. */
  waitFor(n: number, timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

const HEADER = /^X-Nudge-(Opportunity|Step):\s*(\S+)/gim;

export function sinkKey(opportunityId: number | string, stepId: string): string {
  return `${opportunityId}.${stepId}`;
}

export async function startBenchSink(): Promise<BenchSink> {
  let received = 0;
  let last = 0;
  const arrivals = new Map<string, number>();
  let waiter: { n: number; resolve(): void } | null = null;
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    size: 10 * 1024 * 1024,
    onData(stream, _session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const at = performance.now();
        const text = Buffer.concat(chunks).toString('utf8');
        const head = text.slice(0, Math.max(0, text.indexOf('\r\n\r\n')));
        const found: Record<string, string> = {};
        for (const m of head.matchAll(HEADER)) found[m[1]!.toLowerCase()] = m[2]!;
        if (found.opportunity && found.step) arrivals.set(sinkKey(found.opportunity, found.step), at);
        received += 1;
        last = at;
        if (waiter && received >= waiter.n) waiter.resolve();
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.server.address() as AddressInfo).port;
  return {
    url: `smtp://127.0.0.1:${port}`,
    count: () => received,
    arrivals,
    lastArrival: () => last,
    reset() {
      received = 0;
      last = 0;
      arrivals.clear();
    },
    waitFor(n, timeoutMs) {
      if (received >= n) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiter = null;
          reject(new Error(`SMTP sink: ${received} of ${n} messages after ${timeoutMs} ms`));
        }, timeoutMs);
        waiter = { n, resolve: () => { clearTimeout(timer); waiter = null; resolve(); } };
      });
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
