/**
 * `simulate` must agree with what `tick` + `work` actually do over the same days: the same sends
 * and the same suppressions, on the same days. Tested directly: simulate first (it must write
 * nothing), then run the real thing every hour over the same span and compare.
 */
import path from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runNudge } from './helpers/cli.ts';
import { deliveries, insertContact, insertOpportunity } from './helpers/fixtures.ts';
import { createWorld, type World } from './helpers/world.ts';
import type { Simulation } from '../src/simulate.ts';
import { localDate } from '../src/journey/time.ts';

const JOURNEY = `
defaults:
  timeZone: Europe/Brussels
  sendAt: "09:00"
  window: 24h
  quietHours: { from: "20:00", to: "08:00" }
  frequencyCap: { max: 1, perDays: 2 }
steps:
  - id: seven-days
    template: t
    window: 5d
    trigger: { closingDate: { daysBefore: 7 } }
  - id: three-days
    template: t
    trigger: { closingDate: { daysBefore: 3 } }
    stages: [proposal, negotiation]
  - id: late-evening
    template: t
    sendAt: "22:00"
    window: 36h
    trigger: { closingDate: { daysBefore: 1 } }
  - id: proposal-follow-up
    template: t
    trigger: { stageEntered: { stage: proposal, daysAfter: 2 } }
  - id: owner-reminder
    to: owner
    template: t
    trigger: { closingDate: { daysAfter: 1 } }
`;

// Midnight in Brussels (CET, +1), so the four days are whole local days.
const FROM = '2027-02-28T23:00:00Z';
const DAYS = 4;

let world: World;

beforeAll(async () => {
  // One worker slot and one scan chain: when a contact has two emails due at the same instant and
  // the cap allows one, the daemon sends whichever job a worker takes first. With one slot that is
  // the order the scan queued them in, and with one chain that is the scan's order (closing date,
  // then id), which simulate follows, so the two runs are comparable send for send. (Two chains
  // queue the pages of two spans of closing days as they are read, interleaved.)
  world = await createWorld({ shippedTemplates: false, env: { NUDGE_CONCURRENCY: '1', NUDGE_SCAN_CHAINS: '1' } });
  world.write('journeys.yaml', JOURNEY);
  world.write('t.hbs', '---\nsubject: "{{reference}}"\n---\n<p>{{reference}}</p>\n');
  const db = world.database.db;
  const zones = ['Europe/Brussels', 'America/New_York', 'Asia/Tokyo', 'UTC', null];
  const contacts: number[] = [];
  for (let i = 0; i < 8; i++) contacts.push(await insertContact(db, { email: `c${i}@customer.test`, time_zone: zones[i % zones.length]! }));
  contacts.push(await insertContact(db, { email: 'gone@customer.test', unsubscribed_at: new Date('2027-01-01T00:00:00Z') }));
  const closings = ['2027-03-03', '2027-03-04', '2027-03-05', '2027-03-06', '2027-03-08', '2027-03-02', '2027-02-28', '2027-03-10'];
  for (let i = 0; i < 16; i++) {
    await insertOpportunity(db, {
      title: `Deal ${i}`, closing_date: closings[i % closings.length]!, stage: ['qualification', 'proposal', 'negotiation'][i % 3]!,
      // Contacts 0..3 have two opportunities each: the frequency cap decides between them.
      primary_contact_id: i === 15 ? null : contacts[i % 9]!, owner_email: i % 4 === 0 ? `rep${i}@acme.test` : null,
      stage_entered_at: new Date(Date.parse(FROM) - ((i % 4) * 20 + 10) * 3_600_000),
    });
  }
});

afterAll(async () => {
  await world?.close();
});

const day = (d: Date) => localDate(d, 'Europe/Brussels');

describe('simulate', () => {
  it('agrees with tick + work run every hour over the same days, and writes nothing', async () => {
    const r = await runNudge(['simulate', '--days', String(DAYS), '--now', FROM, '--json'], world.env);
    expect(r.code).toBe(0);
    const simulation = JSON.parse(r.stdout) as Simulation;
    expect(simulation.days.map((d) => d.date)).toEqual(['2027-03-01', '2027-03-02', '2027-03-03', '2027-03-04']);
    expect(await deliveries(world.database.db)).toEqual([]);
    expect(await world.rt.queue.getJobCounts('waiting', 'delayed')).toMatchObject({ waiting: 0, delayed: 0 });

    const predicted = {
      sends: simulation.days.flatMap((d) => d.sends.map((s) => `${d.date} ${s.opportunityId} ${s.stepId} ${s.recipient}`)).sort(),
      suppressions: simulation.days.flatMap((d) => d.suppressions.map((s) => `${d.date} ${s.opportunityId} ${s.stepId} ${s.reason}`)).sort(),
    };
    // The data must exercise what is compared: sends, caps, quiet hours, expiries, catch-up.
    expect(predicted.sends.length).toBeGreaterThan(8);
    // A 22:00 step falls in quiet hours: for a Brussels contact it moves to 08:00 CET (07:00Z).
    expect(simulation.days.flatMap((d) => d.sends).some((s) => s.stepId === 'late-evening' && s.dueAt.endsWith('T07:00:00.000Z'))).toBe(true);
    for (const reason of ['frequency_cap', 'expired', 'unsubscribed', 'no_contact', 'superseded', 'closing_date_passed']) {
      expect(predicted.suppressions.some((s) => s.endsWith(reason))).toBe(true);
    }

    for (let t = Date.parse(FROM); t < Date.parse(FROM) + DAYS * 86_400_000; t += 3_600_000) {
      const now = new Date(t).toISOString();
      await world.tick(now);
      await world.drain(now);
    }
    const rows = await deliveries(world.database.db);
    const actual = {
      sends: rows.filter((x) => x.status === 'sent').map((x) => `${day(x.decided_at)} ${x.opportunity_id} ${x.step_id} ${x.recipient}`).sort(),
      suppressions: rows.filter((x) => x.status === 'suppressed').map((x) => `${day(x.decided_at)} ${x.opportunity_id} ${x.step_id} ${x.reason}`).sort(),
    };
    expect(actual).toEqual(predicted);
    expect(world.smtp.received).toHaveLength(predicted.sends.length);
  }, 180_000);

  // Instants worked out by hand (Europe/Brussels: CEST, +2, in May and October 2027).
  describe('on a journey of its own', () => {
    const OWN = `
defaults:
  timeZone: Europe/Brussels
steps:
  - id: after-activity
    template: t
    skipIfRecentActivity: 2d
    trigger: { closingDate: { daysBefore: 20 } }
  - id: proposal-entered
    template: t
    trigger: { stageEntered: { stage: proposal, daysAfter: 2 } }
`;
    const simulate = async (now: string, days: number): Promise<Simulation> => {
      world.write('own-journey.yaml', OWN);
      const r = await runNudge(['simulate', '--days', String(days), '--now', now, '--json'], { ...world.env, NUDGE_JOURNEYS: path.join(world.templatesDir, 'own-journey.yaml') });
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as Simulation;
    };

    it('sends a step held by an activity once the activity stops counting, inside its window', async () => {
      const db = world.database.db;
      const contact = await insertContact(db, { email: 'busy@customer.test', time_zone: 'Europe/Brussels' });
      const id = await insertOpportunity(db, { title: 'Busy', closing_date: '2027-10-25', stage: 'negotiation', primary_contact_id: contact, stage_entered_at: new Date('2027-01-01T00:00:00Z') });
      // Due 2027-10-05 09:00 CEST (07:00Z), window until 10-06 07:00Z; the call counts until 10-06 06:30Z.
      await sql`insert into activities (opportunity_id, kind, done_at) values (${id}, 'call', '2027-10-04T06:30:00Z')`.execute(db);
      const simulation = await simulate('2027-10-05T06:00:00Z', 3);
      const mine = simulation.days.map((d) => ({
        date: d.date,
        sends: d.sends.filter((x) => x.opportunityId === id).map((x) => [x.stepId, x.dueAt, x.at]),
        suppressions: d.suppressions.filter((x) => x.opportunityId === id).map((x) => [x.stepId, x.reason]),
      }));
      expect(mine).toEqual([
        { date: '2027-10-05', sends: [], suppressions: [['after-activity', 'recent_activity']] },
        // Before, it looked again every hour: at 06:00Z the call still counted, at 07:00Z the window was shut.
        { date: '2027-10-06', sends: [['after-activity', '2027-10-05T07:00:00.000Z', '2027-10-06T06:30:00.001Z']], suppressions: [] },
        { date: '2027-10-07', sends: [], suppressions: [] },
      ]);
      // The text says when it goes; it said the due time there.
      const text = await runNudge(['simulate', '--days', '3', '--now', '2027-10-05T06:00:00Z'], { ...world.env, NUDGE_JOURNEYS: path.join(world.templatesDir, 'own-journey.yaml') });
      expect(text.stdout).toContain(`  send      opportunity ${id}  after-activity  at 2027-10-06T06:30:00.001Z (due 2027-10-05T07:00:00.000Z)\n`);
    });

    it('sees a stage entered after --now that falls due within its days', async () => {
      const db = world.database.db;
      const contact = await insertContact(db, { email: 'later@customer.test', time_zone: 'Europe/Brussels' });
      // Entered 2027-05-11 00:30 CEST: due on the 13th at 09:00 CEST (07:00Z). Before, simulate
      // read stage entries up to a day after --now only.
      const id = await insertOpportunity(db, { title: 'Later', closing_date: '2027-12-31', stage: 'proposal', primary_contact_id: contact, stage_entered_at: new Date('2027-05-10T22:30:00Z') });
      const simulation = await simulate('2027-05-01T00:00:00Z', 20);
      const sends = simulation.days.flatMap((d) => d.sends.filter((x) => x.opportunityId === id).map((x) => [d.date, x.stepId, x.dueAt]));
      expect(sends).toEqual([['2027-05-13', 'proposal-entered', '2027-05-13T07:00:00.000Z']]);
    });
  });

  it('refuses a bad --days', async () => {
    const r = await runNudge(['simulate', '--days', 'ten'], world.env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--days must be a whole number from 1 to 366/);
  });
});
