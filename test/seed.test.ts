/** The newcomer's path: `seed --demo`, then the first scan sends real emails and suppresses the right ones. */
import { sql } from 'kysely';
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

it('seed --demo --opportunities N writes N more opportunities, each with a contact of its own, within the pipeline and the dates it says', async () => {
  expect((await runNudge(['seed', '--demo', '--now', NOW], world.env)).code).toBe(0);
  const before = await counts();
  const seed = await runNudge(['seed', '--demo', '--opportunities', '25000', '--now', NOW], world.env);
  expect(seed.code).toBe(0);
  expect(seed.stdout).toMatch(/generated: 25000 contacts, 25000 opportunities/);
  // Run twice: N more each time, with addresses of their own.
  expect((await runNudge(['seed', '--demo', '--opportunities', '5', '--now', NOW], world.env)).code).toBe(0);
  const after = await counts();
  expect([after.opportunities - before.opportunities, after.contacts - before.contacts]).toEqual([25005, 25005]);

  const db = world.database.db;
  const generated = await db.selectFrom('opportunities as o').innerJoin('contacts as c', 'c.id', 'o.primary_contact_id')
    .innerJoin('stages as s', 's.key', 'o.stage')
    .where('c.email', 'like', 'customer-%@example.com')
    .select((eb) => [
      eb.fn.countAll<string>().as('n'),
      eb.fn.count<string>('o.amount').as('withAmount'),
      sql<string>`count(distinct c.email)`.as('addresses'),
      sql<string>`count(distinct o.primary_contact_id)`.as('contacts'),
      sql<string>`min(o.closing_date)::text`.as('first'),
      sql<string>`max(o.closing_date)::text`.as('last'),
      sql<string>`count(*) filter (where s.outcome <> 'open')`.as('closed'),
      sql<string>`string_agg(distinct o.currency, ',' order by o.currency)`.as('currencies'),
      sql<string>`min(o.stage_entered_at)`.as('firstEntered'),
      sql<string>`max(o.stage_entered_at)`.as('lastEntered'),
      sql<string>`count(distinct o.stage_entered_at)`.as('entries'),
    ]).executeTakeFirstOrThrow();
  expect(generated).toMatchObject({ n: 25005, addresses: 25005, contacts: 25005, first: '2026-10-28', last: '2027-02-25', currencies: 'EUR,GBP,JPY,USD' });
  // Stages entered over the 60 days before --now (10:30Z on 27 November), not at the clock's now.
  expect(new Date(generated.firstEntered).getTime()).toBeGreaterThanOrEqual(Date.parse('2026-09-28T10:30:00Z'));
  expect(new Date(generated.lastEntered).getTime()).toBeLessThanOrEqual(Date.parse(NOW));
  expect(new Date(generated.lastEntered).getTime()).toBeGreaterThan(Date.parse(NOW) - 86_400_000);
  expect(Number(generated.entries)).toBeGreaterThan(20_000);
  // One in seven blank, one in ten won or lost (derived from the contacts' ids).
  expect(Number(generated.withAmount)).toBeGreaterThan(25005 * 0.84);
  expect(Number(generated.withAmount)).toBeLessThan(25005 * 0.87);
  expect(Number(generated.closed)).toBeGreaterThan(25005 * 0.09);
  expect(Number(generated.closed)).toBeLessThan(25005 * 0.11);
});

it('two seed --opportunities at once write addresses of their own', async () => {
  const runs = await Promise.all([1, 2].map(() => runNudge(['seed', '--demo', '--opportunities', '40000', '--now', NOW], world.env)));
  expect(runs.map((r) => r.code)).toEqual([0, 0]);
  const { n, addresses } = await world.database.db.selectFrom('contacts').where('email', 'like', 'customer-%@example.com')
    .select([sql<number>`count(*)::int`.as('n'), sql<number>`count(distinct email)::int`.as('addresses')]).executeTakeFirstOrThrow();
  expect(addresses).toBe(n);
});

it('seed --opportunities refuses what is not a count', async () => {
  for (const bad of ['0', 'many', '20000000']) {
    const r = await runNudge(['seed', '--demo', '--opportunities', bad], world.env);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`--opportunities must be a whole number from 1 to 10000000, got "${bad}"`);
  }
});

async function counts(): Promise<{ opportunities: number; contacts: number }> {
  const count = async (table: 'opportunities' | 'contacts') =>
    Number((await world.database.db.selectFrom(table).select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()).n);
  return { opportunities: await count('opportunities'), contacts: await count('contacts') };
}
