/** The newcomer's path: `seed --demo`, then the first scan sends real emails and suppresses the right ones. */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runNudge } from './helpers/cli.ts';
import { createWorld, type World } from './helpers/world.ts';

let world: World;

beforeAll(async () => {
  world = await createWorld();
});

afterAll(async () => {
  await world?.close();
});

const NOW = '2026-11-27T10:30:00Z';

it('seed --demo writes a pipeline whose first scan sends and suppresses, once', async () => {
  const seed = await runNudge(['seed', '--demo', '--now', NOW], world.env);
  expect(seed.code).toBe(0);
  expect(seed.stdout).toMatch(/demo pipeline written: 7 contacts, 11 opportunities/);
  expect((await runNudge(['seed', '--demo', '--now', NOW], world.env)).stdout).toMatch(/already present/);

  expect((await runNudge(['tick', '--now', NOW], world.env)).code).toBe(0);
  const work = await runNudge(['work', '--drain', '--now', NOW], world.env);
  expect(work.code).toBe(0);

  const byRecipient = new Map(world.smtp.received.map((m) => [m.envelopeTo[0], m.parsed]));
  expect(byRecipient.get('alice.martin@example.com')?.subject).toContain('Trip to the USA');
  expect(byRecipient.get('bernd.schulz@example.com')?.subject).toContain('Linguistic courses in Australia');
  expect(byRecipient.get('carla.diaz@example.com')?.subject).toContain('Team offsite in Lisbon');
  expect(byRecipient.get('daichi.sato@example.com')?.headers.get('x-nudge-step')).toBe('proposal-follow-up');
  expect(byRecipient.get('sales@example.com')?.headers.get('x-nudge-step')).toBe('update-closing-date');
  // The German contact gets the German variant.
  expect(byRecipient.get('bernd.schulz@example.com')?.html).toMatch(/Hallo|Guten Tag/);

  const rows = await world.database.db.selectFrom('deliveries as d').innerJoin('opportunities as o', 'o.id', 'd.opportunity_id')
    .select(['o.title', 'd.status', 'd.reason', 'd.step_id']).execute();
  const reasonsOf = (title: string) => rows.filter((r) => r.title === title).map((r) => r.reason ?? r.status);
  expect(reasonsOf('Wine tasting tour <Bordeaux> & "friends"')).toContain('unsubscribed');
  expect(reasonsOf('Sailing course in Croatia')).toEqual(['no_contact']);
  expect(reasonsOf('Cooking class in Naples')).toEqual(['invalid_email']);
  expect(reasonsOf('Ski week in the Alps')).toEqual([]);
  expect(world.smtp.received.some((m) => m.envelopeTo[0] === 'eve.unsubscribed@example.com')).toBe(false);

  const before = world.smtp.received.length;
  await runNudge(['tick', '--now', '2026-11-27T10:31:00Z'], world.env);
  await runNudge(['work', '--drain', '--now', '2026-11-27T10:31:00Z'], world.env);
  expect(world.smtp.received).toHaveLength(before);
});
