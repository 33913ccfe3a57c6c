/**
 * Structured logs on stderr (stdout is for command output). Log ids, never addresses or titles:
 * every call site passes opportunity, step and contact ids only.
 */
import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

/**
 * JSON lines in production and whenever stderr is not a terminal (log collectors); readable,
 * coloured lines in a terminal. `format` (LOG_FORMAT, validated with the configuration) overrides
 * the choice.
 */
export function createLogger(options: { level?: string; format?: 'json' | 'pretty' | null; name?: string } = {}): Logger {
  const format = options.format ?? (process.stderr.isTTY && process.env.NODE_ENV !== 'production' ? 'pretty' : 'json');
  const destination = format === 'pretty'
    ? pretty({ destination: 2, sync: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,name' })
    : pino.destination({ fd: 2, sync: true });
  return pino({
    name: options.name ?? 'nudge',
    level: options.level ?? 'info',
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  }, destination);
}

export const silentLogger: Logger = pino({ level: 'silent' });
