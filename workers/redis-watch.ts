/**
 * Whether Redis answers. A Redis that is down shows on its connection (refused, reconnecting: the
 * runtime logs it); one that hangs (a frozen process or host, a network that drops packets
 * without a reset) keeps its connections open, and every command waits for it without a word.
 * A PING (`rt.pingRedis`: on a Redis Cluster, a read in each queue's slot), sent while none is
 * outstanding, tells: not answered within `pingWaitMs`, or failed while the connection says it
 * is ready (a Cluster's master gone: the Cluster's connection stays ready), Redis counts as gone
 * until one is answered.
 */
import type { Runtime } from '../src/runtime.ts';

export interface RedisWatch {
  /** For how long Redis has been gone (its connection down, or a PING unanswered); null while it answers. */
  goneFor(): number | null;
  /** Why it counts as gone, as of the last `goneFor`. */
  readonly why: string | null;
  stop(): void;
}

export interface RedisWatchOptions {
  everyMs: number;
  pingWaitMs: number;
  /** Log a warning when a PING goes unanswered, and a line when Redis answers again. */
  log?: boolean;
}

export function watchRedis(rt: Runtime, options: RedisWatchOptions): RedisWatch {
  const { everyMs, pingWaitMs } = options;
  let since: number | null = null;
  let why: string | null = null;
  let unansweredSince: number | null = null;
  /** Why the last PING counts as unanswered. */
  let unansweredWhy = '';
  let pinging = false;
  let stopped = false;
  let hung: NodeJS.Timeout | undefined;
  /** The latest probe: an earlier one that settles late only counts if Redis answered it. */
  let latest = 0;
  let latestSent = 0;
  const ping = () => {
    if (stopped || !rt.redisOpened || rt.redisDown) return;
    // One probe at a time, until it is older than the wait: then another at each interval (one
    // that never settles, left in a queue ioredis never flushes, must not stop the watch for good).
    if (pinging && Date.now() - latestSent < pingWaitMs) return;
    pinging = true;
    const id = ++latest;
    const sent = Date.now();
    latestSent = sent;
    const unanswered = (failed?: Error) => {
      // A connection that dropped meanwhile (ioredis sends the PING again once it is back) is the
      // connection's to report.
      if (stopped || rt.redisDown || unansweredSince !== null) return;
      unansweredSince = sent;
      unansweredWhy = failed ? `PING failed: ${failed.message}` : `no answer to PING within ${pingWaitMs} ms`;
      if (options.log) rt.logger.warn(failed ? { err: failed.message } : { waitedMs: pingWaitMs }, 'Redis does not answer a PING, its connection open: scans and jobs wait for it');
    };
    clearTimeout(hung);
    hung = setTimeout(() => unanswered(), pingWaitMs);
    hung.unref();
    const answered = () => {
      // Any probe answered, however late: Redis answers.
      clearTimeout(hung);
      pinging = false;
      if (unansweredSince !== null && options.log && !stopped) rt.logger.info({ waitedMs: Date.now() - unansweredSince }, 'Redis answers again');
      unansweredSince = null;
    };
    rt.pingRedis().then(answered, (error: Error) => {
      if (id !== latest) return;
      clearTimeout(hung);
      pinging = false;
      unanswered(error);
    });
  };
  const probe = setInterval(ping, everyMs);
  probe.unref();
  ping();
  return {
    goneFor() {
      const down = rt.redisDown ? 'connection down' : unansweredSince !== null ? unansweredWhy : null;
      if (down === null) {
        since = null;
        why = null;
        return null;
      }
      since ??= rt.redisDown ? Date.now() : unansweredSince;
      why = down;
      return Date.now() - since!;
    },
    get why() {
      return why;
    },
    stop() {
      stopped = true;
      clearInterval(probe);
      clearTimeout(hung);
    },
  };
}
