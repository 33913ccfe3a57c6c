/**
 * Every process of an installation must share NUDGE_SECRET: a worker with another one signs the
 * unsubscribe links of the emails it sends with it, and the HTTP servers of the others refuse
 * them (400); nor can it open a send another worker kept in a job (src/send-outcome.ts). Nothing
 * else would show it, so each daemon process leaves a fingerprint of its secret in Redis (a keyed
 * hash: it tells nothing of the secret) and reads back the one it replaces: another one means a
 * process with another secret shares this queue. It is logged as an error, once a minute at most,
 * and the process carries on: during a rolling restart that changes the secret, old and new
 * processes run together for a while, and both must keep sending. A new process that lists the
 * old secret in NUDGE_SECRET_PREVIOUS says so as a warning instead.
 */
import { createHmac } from 'node:crypto';
import { DELIVER_QUEUE, queuePrefix } from '../src/queue/queues.ts';
import type { Runtime } from '../src/runtime.ts';
import { repeatLimited } from '../src/log-repeats.ts';

/** Longest wait between two checks (shorter when scans are: NUDGE_SCAN_EVERY_MS). */
const CHECK_MS = 30_000;

export function secretFingerprint(secret: string): string {
  return createHmac('sha256', secret).update('nudge secret fingerprint').digest('hex').slice(0, 16);
}

/** Checks now and every interval until stopped; a check that Redis does not answer is skipped. */
export function watchSecret(rt: Runtime): { stop(): void } {
  const mine = secretFingerprint(rt.config.secret);
  const replaced = new Set(rt.config.previousSecrets.map(secretFingerprint));
  // In the delivery queue's slot (a Redis Cluster): the key is the queue's, as is the secret.
  const key = `${queuePrefix(rt.config.queuePrefix, DELIVER_QUEUE)}:nudge-secret`;
  const everyMs = Math.min(CHECK_MS, rt.config.scanEveryMs);
  const log = repeatLimited(rt.logger);
  let checking = false;
  const check = async () => {
    if (checking || rt.redisDown) return;
    checking = true;
    try {
      // Kept a little longer than three checks: it goes with the processes that set it.
      const [[failed, previous]] = (await rt.redis.multi().getset(key, mine).pexpire(key, everyMs * 3 + 1_000).exec()) as [[Error | null, string | null]];
      if (failed) throw failed;
      if (previous !== null && replaced.has(previous)) {
        log('warn', 'a process on this queue still runs with a NUDGE_SECRET this one lists in NUDGE_SECRET_PREVIOUS: expected while a rotation rolls out (this process accepts the links both sign; the other accepts this one\'s only if it lists this secret in its own NUDGE_SECRET_PREVIOUS)', { queuePrefix: rt.config.queuePrefix });
      } else if (previous !== null && previous !== mine) {
        log('error', 'another process on this queue runs with a different NUDGE_SECRET: the unsubscribe links of the emails each sends are refused by the other\'s HTTP server; give every process the same NUDGE_SECRET (expected for a moment only, during a restart that changes it)', { queuePrefix: rt.config.queuePrefix });
      }
    } catch (error) {
      rt.logger.debug({ err: (error as Error).message }, 'could not check NUDGE_SECRET against the other processes; next interval');
    } finally {
      checking = false;
    }
  };
  void check();
  const timer = setInterval(() => void check(), everyMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
