/**
 * Logs for errors that come in bursts. While Redis is down, ioredis reconnects every 2 s at most,
 * and each reconnect fails on every connection the process holds (the shared one, each Worker's
 * own), each failure emitted by every Queue and Worker on it: a line each would bury everything
 * else in the log. Here the first of each message is logged; the same message within the window
 * after is only counted, and the first one after the window is logged with that count.
 */
import { format } from 'node:util';
import type { Logger } from './logger.ts';

/** How long a logged message keeps its repeats out of the log. */
export const REPEAT_WINDOW_MS = 60_000;

/** Distinct messages remembered; past it, all are forgotten (each is then logged once more). */
const MAX_REMEMBERED = 100;

export interface RepeatLimitedLog {
  (level: 'warn' | 'error', msg: string, fields?: Record<string, unknown>): void;
  /**
   * Forgets every message (each is logged again the next time), and returns how many were held
   * back since each was last logged: for a line that says the trouble is over.
   */
  reset(): number;
}

/**
 * A log call that lets a message (its level, text and `err`) through once per `windowMs`; the
 * line after a quiet window says, as `repeated`, how many were held back.
 */
export function repeatLimited(logger: Logger, windowMs = REPEAT_WINDOW_MS, now: () => number = Date.now): RepeatLimitedLog {
  let seen = new Map<string, { loggedAt: number; held: number }>();
  let forgotten = 0;
  const log = (level: 'warn' | 'error', msg: string, fields: Record<string, unknown> = {}) => {
    const key = `${level}\0${msg}\0${String(fields.err ?? '')}`;
    const last = seen.get(key);
    const t = now();
    if (last && t - last.loggedAt < windowMs) {
      last.held += 1;
      return;
    }
    if (!last && seen.size >= MAX_REMEMBERED) forgotten += clear();
    seen.set(key, { loggedAt: t, held: 0 });
    logger[level](last?.held ? { ...fields, repeated: last.held } : fields, msg);
  };
  const clear = () => {
    let held = 0;
    for (const entry of seen.values()) held += entry.held;
    seen = new Map();
    return held;
  };
  return Object.assign(log, {
    reset: () => {
      const held = clear() + forgotten;
      forgotten = 0;
      return held;
    },
  });
}

/**
 * Sends what libraries print with `console.warn` and `console.error` to the log, repeat-limited:
 * BullMQ prints a Redis misconfiguration warning on each connection it opens ("Eviction policy is
 * allkeys-lru. It should be noeviction"), in plain text, where a log collector expects JSON lines.
 * An Error is logged by its message (its stack would be many lines of library frames). Returns
 * the function that puts the console back.
 */
export function consoleToLog(logger: Logger): () => void {
  const log = repeatLimited(logger);
  const saved = { warn: console.warn, error: console.error };
  const line = (args: unknown[]) => args.map((a) => (a instanceof Error ? a.message : typeof a === 'string' ? a : format('%o', a))).join(' ');
  console.warn = (...args: unknown[]) => log('warn', line(args), { from: 'library' });
  console.error = (...args: unknown[]) => log('error', line(args), { from: 'library' });
  return () => Object.assign(console, saved);
}
