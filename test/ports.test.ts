/** The ports the tests' own servers listen on (test/helpers/ports.ts). */
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { freePort } from './helpers/ports.ts';

const RANGE_FILE = '/proc/sys/net/ipv4/ip_local_port_range';

describe.skipIf(!existsSync(RANGE_FILE))('freePort on Linux', () => {
  it('gives ports below the ephemeral range, which an outgoing connection cannot take while a test\'s server is stopped', async () => {
    const low = Number(readFileSync(RANGE_FILE, 'utf8').trim().split(/\s+/)[0]);
    const ports = await Promise.all(Array.from({ length: 20 }, () => freePort()));
    for (const port of ports) {
      expect(port).toBeGreaterThanOrEqual(1024);
      expect(port).toBeLessThan(low);
    }
  });
});
