/**
 * A BullMQ Worker that stopped taking jobs while Redis answers. After a Redis Cluster was down for
 * a while, a Worker's blocking connection could stay wedged (its reconnect never settling): the
 * process looked healthy, and jobs waited for ever. Told by what a user would see: jobs waiting
 * in the queue at three checks in a row (20 s and more) while this worker, idle all along, started
 * none; a healthy worker with a free slot takes a waiting job within milliseconds, or after 15 s
 * when its last fetch failed. It is then replaced.
 */
import { within } from '../src/settle.ts';
import type { Runtime } from '../src/runtime.ts';

export interface StallWatchOptions {
  /** What the worker does, for the log: `delivery`, `scan`. */
  what: string;
  everyMs: number;
  /** Jobs waiting in the worker's queue (not delayed, not active). */
  waiting(): Promise<number>;
  /** Jobs this worker has started so far. */
  started(): number;
  /** Whether this worker runs no job now. */
  idle(): boolean;
  /** Closes the stuck worker and starts another in its place. */
  replace(): Promise<void>;
}

export function watchForStall(rt: Runtime, options: StallWatchOptions): { stop(): void } {
  /** Since when, and with how many started, jobs have waited at every check while the worker was idle. */
  let since: { at: number; started: number; checks: number } | null = null;
  let checking = false;
  let stopped = false;
  const check = async () => {
    if (checking || stopped) return;
    checking = true;
    try {
      const waiting = await within(STALL_READ_MS, 'Redis (the waiting jobs)', options.waiting()).catch(() => null);
      // Redis not answering is the Redis watch's to report; jobs running, this worker is not stuck.
      if (stopped || waiting === null || waiting === 0 || !options.idle() || (since !== null && since.started !== options.started())) {
        since = null;
        return;
      }
      since ??= { at: Date.now(), started: options.started(), checks: 0 };
      since.checks += 1;
      // Past BullMQ's own pause after a failed fetch (`runRetryDelay`, 15 s), during which a
      // healthy worker takes nothing either.
      if (since.checks < STALL_CHECKS) return;
      rt.logger.warn({ waiting, idleForMs: Date.now() - since.at },
        `the ${options.what} worker took no job while ${waiting} waited (a BullMQ worker wedged after a Redis outage): replaced by a new one`);
      since = null;
      await options.replace();
    } finally {
      checking = false;
    }
  };
  const timer = setInterval(() => void check(), options.everyMs);
  timer.unref();
  return {
    stop() {
      // A check under way replaces nothing once the process stops.
      stopped = true;
      clearInterval(timer);
    },
  };
}

/** Checks in a row, `STALL_CHECK_MS` apart, that find the worker stalled before it is replaced. */
const STALL_CHECKS = 3;

/** Milliseconds between two checks: a wedged worker is replaced within three to four of them (20–40 s). */
const STALL_CHECK_MS = 10_000;

/** How long a check waits for Redis to count the waiting jobs. */
const STALL_READ_MS = 2_000;

interface Closable {
  close(force?: boolean): Promise<void>;
}

/** A worker started by `start`, and started again in its place when it stalls (`watchForStall`). */
export interface SupervisedWorker<W extends Closable> {
  /** The worker running now. */
  readonly current: W;
  /** Stops watching, then closes the worker running now (waiting for its jobs, as BullMQ's close does). */
  close(): Promise<void>;
}

export function superviseWorker<W extends Closable>(
  rt: Runtime, options: Omit<StallWatchOptions, 'replace' | 'everyMs'> & { start(): W; everyMs?: number },
): SupervisedWorker<W> {
  let worker = options.start();
  const watch = watchForStall(rt, {
    ...options,
    everyMs: options.everyMs ?? STALL_CHECK_MS,
    replace: async () => {
      const wedged = worker;
      worker = options.start();
      await letGo(wedged);
    },
  });
  return {
    get current() {
      return worker;
    },
    async close() {
      watch.stop();
      await worker.close();
    },
  };
}

/** Closes a worker being replaced without waiting on what is wedged: its close may never settle. */
async function letGo(worker: Closable): Promise<void> {
  await within(CLOSE_WAIT_MS, 'closing a wedged worker', worker.close(true)).catch(() => {});
}

const CLOSE_WAIT_MS = 5_000;
