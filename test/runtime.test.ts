/**
 * The Runtime's bound on Redis waits: what `redisBound` waits for fails at once when the process
 * closes the connection to stop without Redis (ioredis leaves the commands queued on a connection
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

  it('fails what waits for ever once the connection is closed to stop without Redis, and what comes after at once', async () => {
    const rt = runtime();
    const waiting = rt.redisBound('Redis (adding jobs)', new Promise(() => {}));
    rt.disconnectRedis();
    await expect(waiting).rejects.toThrow('the Redis connection was closed: the process stops without Redis');
    await expect(rt.redisBound('Redis (adding jobs)', Promise.resolve(1))).rejects.toThrow('stops without Redis');
  });

  it('still bounds the wait by NUDGE_REDIS_WAIT_MS where it is set', async () => {
    const rt = runtime();
    rt.redisWaitMs = 50;
    await expect(rt.redisBound('Redis (counting jobs)', new Promise(() => {}))).rejects.toThrow('Redis (counting jobs) did not answer within 50 ms');
  });
});
