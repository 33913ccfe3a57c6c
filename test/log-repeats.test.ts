/** The repeat-limited log: one line per message per window, the held-back count on the next. */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { consoleToLog, repeatLimited } from '../src/log-repeats.ts';

function capture(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(JSON.parse(String(chunk)) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ base: null, timestamp: false }, stream), lines };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('repeatLimited', () => {
  it('logs a message once per window, then with how many were held back', async () => {
    const { logger, lines } = capture();
    let now = 1_000_000;
    const log = repeatLimited(logger, 60_000, () => now);
    for (let i = 0; i < 30; i++) {
      log('warn', 'Redis or queue error', { source: i % 2 ? 'worker' : 'connection', err: 'connect ECONNREFUSED' });
      now += 2_000; // ioredis's longest wait between reconnects
    }
    log('warn', 'Redis or queue error', { source: 'queue', err: 'connect ECONNREFUSED' });
    await tick();
    expect(lines).toEqual([
      { level: 40, source: 'connection', err: 'connect ECONNREFUSED', msg: 'Redis or queue error' },
      { level: 40, source: 'queue', err: 'connect ECONNREFUSED', msg: 'Redis or queue error', repeated: 29 },
    ]);
  });

  it('keeps messages, errors and levels apart', async () => {
    const { logger, lines } = capture();
    const log = repeatLimited(logger, 60_000, () => 0);
    log('warn', 'a', { err: 'x' });
    log('warn', 'a', { err: 'y' });
    log('error', 'a', { err: 'x' });
    log('warn', 'b', { err: 'x' });
    log('warn', 'a', { err: 'x' });
    await tick();
    expect(lines.map((l) => [l.level, l.msg, l.err])).toEqual([[40, 'a', 'x'], [40, 'a', 'y'], [50, 'a', 'x'], [40, 'b', 'x']]);
  });
});

describe('consoleToLog', () => {
  let restore: (() => void) | null = null;
  afterEach(() => restore?.());

  it('turns console.warn and console.error into log entries, an Error by its message, repeats held back, and puts the console back', async () => {
    const { logger, lines } = capture();
    const { warn, error } = console;
    restore = consoleToLog(logger);
    for (let i = 0; i < 7; i++) console.warn('IMPORTANT! Eviction policy is allkeys-lru. It should be "noeviction"');
    console.error(new Error('connect ECONNREFUSED 127.0.0.1:6379'));
    restore();
    restore = null;
    expect(console.warn).toBe(warn);
    expect(console.error).toBe(error);
    await tick();
    expect(lines).toEqual([
      { level: 40, from: 'library', msg: 'IMPORTANT! Eviction policy is allkeys-lru. It should be "noeviction"' },
      { level: 50, from: 'library', msg: 'connect ECONNREFUSED 127.0.0.1:6379' },
    ]);
  });
});

describe('repeatLimited.reset', () => {
  it('returns how many were held back, and lets each message through again at once', async () => {
    const { logger, lines } = capture();
    const log = repeatLimited(logger, 60_000, () => 0);
    for (let i = 0; i < 5; i++) log('warn', 'a', { err: 'x' });
    for (let i = 0; i < 3; i++) log('error', 'b', { err: 'y' });
    expect(log.reset()).toBe(6);
    expect(log.reset()).toBe(0);
    log('warn', 'a', { err: 'x' });
    await tick();
    expect(lines.map((l) => [l.msg, l.repeated])).toEqual([['a', undefined], ['b', undefined], ['a', undefined]]);
  });
});
