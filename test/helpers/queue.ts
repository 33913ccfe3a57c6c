/** A Redis key prefix of the test file's own, and the removal of every key under it. */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { REDIS_URL } from './env.ts';

export function testQueuePrefix(): string {
  return `nudge-test-${randomBytes(5).toString('hex')}`;
}

/** Deletes every key of the installation `prefix` (all queues: keys are `{<prefix>.<queue>}:…`). */
export async function removeQueueKeys(prefix: string, url = REDIS_URL): Promise<number> {
  const redis = new Redis(url);
  let removed = 0;
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `{${prefix}.*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) removed += await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
  return removed;
}
