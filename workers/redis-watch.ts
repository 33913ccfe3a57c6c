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
  const ping = () => {
    if (pinging || stopped || !rt.redisOpened || rt.redisDown) return;
    pinging = true;
    const sent = Date.now();
    const unanswered = (failed?: Error) => {
      // A connection that dropped meanwhile (ioredis sends the PING again once it is back) is the
      // connection's to report.
      if (stopped || rt.redisDown || unansweredSince !== null) return;
      unansweredSince = sent;
      unansweredWhy = failed ? `PING failed: ${failed.message}` : `no answer to PING within ${pingWaitMs} ms`;
      if (!options.log) return;
      if (failed) rt.logger.warn({ err: failed.message }, 'Redis does not answer a PING, its connection open: scans and jobs wait for it');
      else rt.logger.warn({ waitedMs: pingWaitMs }, 'Redis does not answer a PING, its connection open: scans and jobs wait for it');
    };
    hung = setTimeout(() => unanswered(), pingWaitMs);
    hung.unref();
    const answered = () => {
      clearTimeout(hung);
      pinging = false;
      if (unansweredSince !== null && options.log && !stopped) rt.logger.info({ waitedMs: Date.now() - unansweredSince }, 'Redis answers again');
      unansweredSince = null;
    };
    rt.pingRedis().then(answered, (error: Error) => {
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
