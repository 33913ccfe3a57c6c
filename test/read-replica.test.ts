/** DATABASE_READ_URL: the scan reads its pages from the replica; decisions go to the primary. */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startDaemon, until } from './helpers/daemon.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';
import { deliveries, insertOpportunity } from './helpers/fixtures.ts';
import { createWorld, type World } from './helpers/world.ts';

let replica: TestDatabase;
let world: World;

beforeAll(async () => {
  // A stand-in replica: another database, so it is visible which one each query used.
  replica = await createTestDatabase();
  world = await createWorld({ env: { DATABASE_READ_URL: replica.url } });
});

afterAll(async () => {
  await world?.close();
  await replica?.drop();
});

it('pages come from the replica, the suppressions it decides are written to the primary', async () => {
  await insertOpportunity(replica.db, { title: 'Only on the replica', closing_date: '2027-01-17', stage: 'proposal' });
  const summary = await world.tick('2027-01-14T09:00:00Z');
  expect(summary).toMatchObject({ scanned: 1, suppressed: 3 });
  expect((await deliveries(world.database.db)).filter((r) => r.step_id === 'closing-in-3-days').map((r) => r.reason)).toEqual(['no_contact']);
  expect(await deliveries(replica.db)).toEqual([]);
});

it('a replica that cannot be reached is named in the daemon\'s log as DATABASE_READ_URL, not taken for the primary', async () => {
  const daemon = startDaemon({ ...world.env, DATABASE_READ_URL: 'postgres://root@127.0.0.1:1/nudge' });
  try {
    await until('a failed scan', () => daemon.logs.some((l) => l.msg === 'scan failed; the next interval tries again'), 60_000);
    const failed = daemon.logs.find((l) => l.msg === 'scan failed; the next interval tries again')!;
    expect(failed).toMatchObject({ database: 'DATABASE_READ_URL', err: expect.stringMatching(/ECONNREFUSED 127\.0\.0\.1:1/) as unknown });
    // Said where an operator looks too: the scan stops for good, and /readyz and /metrics said nothing.
    const base = `http://127.0.0.1:${await daemon.port}`;
    // Said, not counted: this process still answers unsubscribe links and could deliver.
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ ok: true, checks: { postgres: 'ok', redis: 'ok', postgresRead: expect.stringMatching(/^failing: .*ECONNREFUSED/) as unknown } });
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(Number(/^nudge_scan_failures_total (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(1);
    expect(metrics).toMatch(/^nudge_scan_last_success_timestamp_seconds 0$/m);
  } finally {
    daemon.child.kill('SIGTERM');
    expect(await daemon.exited).toBe(0);
  }
}, 90_000);
