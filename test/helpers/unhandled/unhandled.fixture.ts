/** Run by test/closed-connections.test.ts in a vitest of its own: a test that passes, leaving the rejection `REJECT` names unheld. */
import { Redis } from 'ioredis';
import { it } from 'vitest';

it('passes, leaving a rejection nobody holds', async () => {
  if (process.env.REJECT === 'closed-connection') {
    // As BullMQ's Worker closed while it starts: ioredis rejects a command nobody holds.
    const client = new Redis(process.env.REDIS_URL!);
    void client.info();
    client.disconnect();
  } else {
    void Promise.reject(new Error('Connection is closed.'));
  }
  await new Promise((r) => setTimeout(r, 300));
});
