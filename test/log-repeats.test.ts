/** The repeat-limited log: one line per message per window, the held-back count on the next. */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { consoleToLog, repeatLimited } from '../src/log-repeats.ts';
import { logDeferral } from '../src/send-outcome.ts';

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

describe('logDeferral', () => {
  it('says a server out of service (no reply, or 421) once a minute, and a deferral of one send (450, 451, 452) each time', async () => {
    const { logger, lines } = capture();
    let now = 0;
    const deps = { logger, repeats: repeatLimited(logger, 60_000, () => now) };
    const codes: string[] = [];
    for (let i = 1; i <= 3; i++) {
      const ids = { opportunityId: i, stepId: 'remind' };
      codes.push(logDeferral(deps, ids, { kind: 'deferred', reason: '421 4.3.2 System not accepting network messages, ada@customer.test' }));
      codes.push(logDeferral(deps, ids, { kind: 'deferred', reason: 'ECONNECTION: connect ECONNREFUSED 127.0.0.1:2525' }));
      codes.push(logDeferral(deps, ids, { kind: 'deferred', reason: '450 4.2.1 mailbox ada@customer.test busy' }));
      now += 10_000;
    }
    now += 60_000;
    codes.push(logDeferral(deps, { opportunityId: 4, stepId: 'remind' }, { kind: 'deferred', reason: '421 try again later' }));
    await tick();
    expect(codes).toEqual(['421', 'connection', '450', '421', 'connection', '450', '421', 'connection', '450', '421']);
    const unavailable = 'smtp service not available (421); sends deferred, BullMQ retries each with backoff';
    expect(lines).toEqual([
      { level: 40, opportunityId: 1, stepId: 'remind', code: '421', msg: unavailable },
      {
        level: 40, opportunityId: 1, stepId: 'remind', code: 'connection', err: 'ECONNECTION', detail: 'connect ECONNREFUSED 127.0.0.1:2525',
        msg: 'smtp cannot be reached; sends deferred, BullMQ retries each with backoff',
      },
      { level: 40, opportunityId: 1, stepId: 'remind', code: '450', msg: 'smtp deferred the send; will retry' },
      { level: 40, opportunityId: 2, stepId: 'remind', code: '450', msg: 'smtp deferred the send; will retry' },
      { level: 40, opportunityId: 3, stepId: 'remind', code: '450', msg: 'smtp deferred the send; will retry' },
      { level: 40, opportunityId: 4, stepId: 'remind', code: '421', msg: unavailable, repeated: 2 },
    ]);
  });
});

describe('logDeferral of a 5xx that refuses Nudge itself', () => {
  it('is an error once a minute, naming the command and the server text without its addresses', async () => {
    const { logger, lines } = capture();
    let now = 0;
    const deps = { logger, repeats: repeatLimited(logger, 60_000, () => now) };
    const refused = { kind: 'deferred', reason: '553 5.7.1 <noreply@acme.test>: Sender address rejected: not owned by user', refusedAt: 'MAIL FROM' } as const;
    for (let i = 1; i <= 3; i++, now += 10_000) expect(logDeferral(deps, { opportunityId: i, stepId: 'remind' }, refused)).toBe('553');
    // A certificate that cannot be verified: the connection's own text says so.
    logDeferral(deps, { opportunityId: 4, stepId: 'remind' }, { kind: 'deferred', reason: 'ESOCKET: certificate has expired' });
    await tick();
    expect(lines).toEqual([
      {
        level: 50, opportunityId: 1, stepId: 'remind', code: '553', command: 'MAIL FROM', err: '553 MAIL FROM', response: '553 5.7.1 <<address>>: Sender address rejected: not owned by user',
        msg: 'smtp refuses Nudge itself (its connection, login, sender or relaying), not an email; sends deferred, BullMQ retries each with backoff: check SMTP_URL and MAIL_FROM',
      },
      {
        level: 40, opportunityId: 4, stepId: 'remind', code: 'connection', err: 'ESOCKET', detail: 'certificate has expired',
        msg: 'smtp cannot be reached; sends deferred, BullMQ retries each with backoff',
      },
    ]);
    // Without the process's repeat-limited log, a line each.
    const alone = capture();
    logDeferral({ logger: alone.logger }, { opportunityId: 5, stepId: 'remind' }, refused);
    logDeferral({ logger: alone.logger }, { opportunityId: 6, stepId: 'remind' }, refused);
    await tick();
    expect(alone.lines.map((l) => [l.level, l.opportunityId, l.command])).toEqual([[50, 5, 'MAIL FROM'], [50, 6, 'MAIL FROM']]);
  });
});
