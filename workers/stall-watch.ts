/**
 * A BullMQ Worker that stopped taking jobs while Redis answers. After a Redis Cluster was down for
 * a while, a Worker's blocking connection could stay wedged (its reconnect never settling): the
 * process looked healthy, and jobs waited for ever. Told by what a user would see: jobs waiting
 * in the queue at two checks in a row while this worker, idle all along, started none; a healthy
 * worker with a free slot takes a waiting job within milliseconds. It is then replaced.
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
  let previous: { waiting: number; started: number } | null = null;
  let checking = false;
  const check = async () => {
    if (checking) return;
    checking = true;
    try {
      const waiting = await within(STALL_READ_MS, 'Redis (the waiting jobs)', options.waiting()).catch(() => null);
      // Redis not answering is the Redis watch's to report; jobs running, this worker is not stuck.
      if (waiting === null || waiting === 0 || !options.idle()) {
        previous = null;
        return;
      }
      const started = options.started();
      if (previous !== null && previous.started === started) {
        rt.logger.warn({ waiting, idleForMs: options.everyMs },
          `the ${options.what} worker took no job while ${waiting} waited (a BullMQ worker wedged after a Redis outage): replaced by a new one`);
        previous = null;
        await options.replace();
        return;
      }
      previous = { waiting, started };
    } finally {
      checking = false;
    }
  };
  const timer = setInterval(() => void check(), options.everyMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

/** Milliseconds between two checks: a wedged worker is replaced within two to three of them. */
export const STALL_CHECK_MS = 10_000;

/** How long a check waits for Redis to count the waiting jobs. */
const STALL_READ_MS = 2_000;

/** Closes a worker being replaced without waiting on what is wedged: its close may never settle. */
export async function letGo(worker: { close(force?: boolean): Promise<void> }): Promise<void> {
  await within(CLOSE_WAIT_MS, 'closing a wedged worker', worker.close(true)).catch(() => {});
}

const CLOSE_WAIT_MS = 5_000;
