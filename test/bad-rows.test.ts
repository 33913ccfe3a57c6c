/**
 * Bad rows the CRM's PostgreSQL accepts and the engine cannot take at face value (SPEC section 8:
 * "that row is suppressed or logged, the run goes on"): an address of kilobytes, days and instants
 * at infinity, before the year 1 or after 9999. Each must cost its own row, never the scan, the
 * worker's other jobs, explain or simulate.
 */
import { createHash, randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { isValidEmail, normalizeEmail } from '../src/journey/recipients.ts';
import { runNudge } from './helpers/cli.ts';
import { DUE_NOW_TEMPLATE } from './helpers/daemon.ts';
import { deliveries, insertContact, insertOpportunity } from './helpers/fixtures.ts';
import { createWorld, type World } from './helpers/world.ts';

// Closing in 3 days at 09:00 UTC (the step's due time); a stage-entered step on 'proposal'.
const JOURNEY = `
defaults:
  timeZone: UTC
steps:
  - id: three-days
    template: t
    trigger: { closingDate: { daysBefore: 3 } }
  - id: after-proposal
    template: t
    trigger: { stageEntered: { stage: proposal, daysAfter: 2 } }
`;
const NOW = '2026-12-07T09:30:00Z';
const CLOSING = '2026-12-10';

let world: World;

beforeAll(async () => {
  world = await createWorld({ shippedTemplates: false });
  world.write('t.hbs', DUE_NOW_TEMPLATE);
  world.write('journeys.yaml', JOURNEY);
});

afterAll(async () => {
  await world?.close();
});

beforeEach(() => world.reset());

const db = () => world.database.db;
const nudge = (args: string[]) => runNudge(args, world.env);
const received = () => world.smtp.received.map((m) => m.envelopeTo[0]).sort();

/** `count` opportunities closing on CLOSING, in 'proposal' since a week, each with its own contact. */
async function due(count: number): Promise<number[]> {
  const ids: number[] = [];
  for (let i = 1; i <= count; i++) {
    const contact = await insertContact(db(), { email: `c${i}@customer.test`, time_zone: 'UTC' });
    ids.push(await insertOpportunity(db(), {
      title: `Deal ${i}`, stage: 'proposal', closing_date: CLOSING, primary_contact_id: contact, stage_entered_at: new Date('2026-11-30T09:00:00Z'),
    }));
  }
  return ids;
}

describe('an address of kilobytes', () => {
  it('is suppressed as invalid_email on its own; the rest of the page is enqueued and sent', async () => {
    const ids = await due(10);
    // Random, as a real one would be: PostgreSQL compresses a repeated letter below its index's limit.
    const long = `${randomBytes(1_650).toString('hex')}@customer.test`;
    await sql`update contacts set email = ${long} where email = 'c3@customer.test'`.execute(db());
    const summary = await world.tick(NOW);
    expect(summary).toMatchObject({ enqueued: 9, suppressed: 1, errors: 0 });
    const [row] = (await deliveries(db(), ids[2])).filter((r) => r.step_id === 'three-days');
    expect(row).toMatchObject({ status: 'suppressed', reason: 'invalid_email' });
    expect(row!.recipient).toBe(`${long.slice(0, 200)} … (3314 characters, sha256 ${createHash('sha256').update(long).digest('hex').slice(0, 12)})`);
    // Scanned again, nothing doubles: the bounded recipient is the same each time.
    expect(await world.tick(NOW)).toMatchObject({ enqueued: 0, suppressed: 0, errors: 0 });
    expect((await world.drain(NOW)).sent).toBe(9);
    expect(received()).toHaveLength(9);
  });

  it('given after the job was enqueued, is suppressed at send time, not failed as a database error', async () => {
    const [id] = await due(1);
    expect((await world.tick(NOW)).enqueued).toBe(1);
    await sql`update contacts set email = ${`${randomBytes(4_800).toString('hex')}@customer.test`}`.execute(db());
    const totals = await world.drain(NOW);
    expect(totals).toMatchObject({ sent: 0, suppressed: 1, infrastructureErrors: 0 });
    expect((await deliveries(db(), id)).map((r) => r.reason)).toEqual(['invalid_email']);
  });
});

describe('an address of kilobytes, shortened', () => {
  it('is cut between characters, and two that start alike stay apart', () => {
    const emoji = `${'a'.repeat(199)}😀${'b'.repeat(100)}@sales.test`;
    const short = normalizeEmail(emoji);
    // Half an emoji would be stored by PostgreSQL as U+FFFD: the row would never match again.
    expect(short).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/);
    expect(short.startsWith(`${'a'.repeat(199)}😀 … (`)).toBe(true);
    const other = normalizeEmail(`${'a'.repeat(199)}😀${'c'.repeat(100)}@sales.test`);
    expect(other).not.toBe(short);
    expect(isValidEmail(short)).toBe(false);
    expect(normalizeEmail(emoji)).toBe(short);
  });
});

describe('days and instants beyond what JavaScript computes with', () => {
  it.each(['infinity', '-infinity', '0044-03-15 BC', '300000-01-01'])(
    'a closing date moved to %s after the job was enqueued: closing_date_changed, and explain and simulate still answer',
    async (day) => {
      const ids = await due(2);
      expect((await world.tick(NOW)).enqueued).toBe(2);
      await sql`update opportunities set closing_date = ${day}::date where id = ${ids[0]}`.execute(db());
      const totals = await world.drain(NOW);
      expect(totals).toMatchObject({ sent: 1, suppressed: 1, infrastructureErrors: 0 });
      expect((await deliveries(db(), ids[0])).map((r) => r.reason)).toEqual(['closing_date_changed']);
      expect(received()).toEqual(['c2@customer.test']);

      const explain = await nudge(['explain', String(ids[0]), '--now', NOW, '--json']);
      expect(explain.stderr).toBe('');
      expect(explain.code).toBe(0);
      // One more, falling due tomorrow: simulated beside the bad row, which does not end the run.
      const later = await insertOpportunity(db(), { title: 'Later', stage: 'qualification', closing_date: '2026-12-11', primary_contact_id: await insertContact(db(), { email: 'later@customer.test' }) });
      const simulate = await nudge(['simulate', '--days', '3', '--now', NOW, '--json']);
      expect(simulate.code).toBe(0);
      const sends = (JSON.parse(simulate.stdout) as { days: { sends: { opportunityId: number; stepId: string }[] }[] }).days.flatMap((d) => d.sends);
      expect(sends.map((x) => `${x.opportunityId} ${x.stepId}`)).toEqual([`${later} three-days`]);
    },
  );

  it.each(['infinity', '294000-01-01 00:00:00+00'])('stage_entered_at at %s: the closing-date step is still sent, explain still answers', async (at) => {
    const [id] = await due(1);
    await sql`update opportunities set stage_entered_at = ${at}::timestamptz where id = ${id}`.execute(db());
    expect((await world.tick(NOW)).enqueued).toBe(1);
    expect(await world.drain(NOW)).toMatchObject({ sent: 1, infrastructureErrors: 0 });
    const explain = await nudge(['explain', String(id), '--now', NOW, '--json']);
    expect(explain.code).toBe(0);
    const steps = (JSON.parse(explain.stdout) as { steps: { stepId: string; verdict: string }[] }).steps;
    // Entered "at infinity": its stage-entered step is far in the future.
    expect(steps.map((s) => `${s.stepId} ${s.verdict}`)).toEqual(['three-days sent', 'after-proposal scheduled']);
  });

  it('unsubscribed_at and bounced_at at infinity count as set: suppressed, and explain answers', async () => {
    const [id] = await due(1);
    await sql`update contacts set unsubscribed_at = 'infinity', bounced_at = '-infinity'`.execute(db());
    await world.tick(NOW);
    await world.drain(NOW);
    expect(received()).toEqual([]);
    expect((await deliveries(db(), id)).find((r) => r.step_id === 'three-days')).toMatchObject({ status: 'suppressed', reason: 'unsubscribed' });
    const explain = await nudge(['explain', String(id), '--now', NOW]);
    expect(explain.code).toBe(0);
  });
});
