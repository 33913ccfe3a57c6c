/**
 * The Runtime's bound on Redis waits: what `redisBound` waits for fails at once when the process
 * gives Redis up to stop without it (ioredis leaves the commands queued on a connection
 * that is reconnecting waiting for ever), and an answer that comes is passed on as it is.
 */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { silentLogger } from '../src/logger.ts';
import { Runtime } from '../src/runtime.ts';

function runtime(): Runtime {
  // Nothing here connects: the connections open on first use.
  return new Runtime(loadConfig({
    DATABASE_URL: 'postgres://root@127.0.0.1:5432/unused', REDIS_URL: 'redis://127.0.0.1:6379', SMTP_URL: 'smtp://127.0.0.1:2525',
    MAIL_FROM: 'Acme <sales@acme.test>', PUBLIC_URL: 'https://nudge.acme.test', NUDGE_SECRET: 'test-secret-0123456789abcdef',
  }), silentLogger);
}

describe('redisBound', () => {
  it('passes an answer and a failure on as they are', async () => {
    const rt = runtime();
    await expect(rt.redisBound('Redis (a command)', Promise.resolve('PONG'))).resolves.toBe('PONG');
    await expect(rt.redisBound('Redis (a command)', Promise.reject(new Error('WRONGTYPE')))).rejects.toThrow('WRONGTYPE');
  });

  it('fails what waits for ever once Redis is given up to stop without it, and what comes after at once', async () => {
    const rt = runtime();
    const waiting = rt.redisBound('Redis (adding jobs)', new Promise(() => {}));
    rt.abandonRedis();
    await expect(waiting).rejects.toThrow('Redis was given up: the process stops without it');
    await expect(rt.redisBound('Redis (adding jobs)', Promise.resolve(1))).rejects.toThrow('stops without it');
  });

  it('still bounds the wait by NUDGE_REDIS_WAIT_MS where it is set', async () => {
    const rt = runtime();
    rt.redisWaitMs = 50;
    await expect(rt.redisBound('Redis (counting jobs)', new Promise(() => {}))).rejects.toThrow('Redis (counting jobs) did not answer within 50 ms');
    // Untimed, for a write that must not be called lost when it lands late: given up only with Redis.
    const untimed = rt.redisBound('Redis (keeping a send in the job)', new Promise(() => {}), { timed: false });
    const outcome = await Promise.race([untimed.then(() => 'answered', () => 'failed'), new Promise((r) => setTimeout(() => r('waiting'), 200))]);
    expect(outcome).toBe('waiting');
    rt.abandonRedis();
    await expect(untimed).rejects.toThrow('stops without it');
  });
});
