/**
 * Journeys that respect people, end to end: frequency cap (also under concurrent workers), quiet
 * hours and weekends, recent activity, contact roles, and closing dates that move.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runNudge } from './helpers/cli.ts';
import { deliveries, insertContact, insertOpportunity } from './helpers/fixtures.ts';
import { createWorld, type World } from './helpers/world.ts';

const TEMPLATE = `---
subject: "{{reference}}"
---
<p>{{reference}}</p>
`;

let world: World;

beforeAll(async () => {
  world = await createWorld({ shippedTemplates: false });
  world.write('t.hbs', TEMPLATE);
});

afterAll(async () => {
  await world?.close();
});

beforeEach(() => world.reset());

const db = () => world.database.db;
const steps = () => world.smtp.received.map((m) => `${m.envelopeTo[0]} ${m.parsed.headers.get('x-nudge-step')}`);

describe('frequency cap', () => {
  const journey = `
defaults:
  timeZone: UTC
  frequencyCap: { max: 1, perDays: 2 }
steps:
  - id: three-days
    template: t
    trigger: { closingDate: { daysBefore: 3 } }
  - id: owner-three-days
    to: owner
    template: t
    trigger: { closingDate: { daysBefore: 3 } }
`;

  it('two opportunities of one contact due together: one email, the other capped; owners are exempt', async () => {
    world.write('journeys.yaml', journey);
    const c = await insertContact(db(), { email: 'busy@customer.test', time_zone: 'UTC' });
    const a = await insertOpportunity(db(), { title: 'A', closing_date: '2026-12-10', primary_contact_id: c, owner_email: 'rep@acme.test' });
    const b = await insertOpportunity(db(), { title: 'B', closing_date: '2026-12-10', primary_contact_id: c, owner_email: 'rep@acme.test' });
    // Each opportunity: the customer step and the owner step.
    expect((await world.tick('2026-12-07T09:00:00Z')).enqueued).toBe(4);
    // Two workers at once: the per-contact lock makes the second see the first's claim.
    await Promise.all([world.drain('2026-12-07T09:00:00Z'), world.drain('2026-12-07T09:00:00Z')]);
    expect(steps().filter((s) => s.startsWith('busy@'))).toEqual(['busy@customer.test three-days']);
    expect(steps().filter((s) => s.startsWith('rep@'))).toHaveLength(2);
    const rows = [...await deliveries(db(), a), ...await deliveries(db(), b)].filter((r) => r.step_id === 'three-days');
    expect(rows.map((r) => r.reason ?? r.status).sort()).toEqual(['frequency_cap', 'sent']);

    const capped = rows.find((r) => r.reason === 'frequency_cap')!;
    const explain = await runNudge(['explain', String(capped.opportunity_id), '--now', '2026-12-07T09:05:00Z', '--json'], world.env);
    const step = (JSON.parse(explain.stdout) as { steps: { stepId: string; verdict: string; reason: string; detail: string; checks: { rule: string; passed: boolean; detail: string }[] }[] })
      .steps.find((s) => s.stepId === 'three-days')!;
    expect(step).toMatchObject({ verdict: 'suppressed', reason: 'frequency_cap', detail: '1 email to this contact on 2026-12-07, cap 1 per 2 days' });
    expect(step.checks.at(-1)).toEqual({ rule: 'frequency_cap', passed: false, detail: '1 email to this contact on 2026-12-07, cap 1 per 2 days' });
    expect(step.checks.find((c) => c.rule === 'subscribed')).toEqual({ rule: 'subscribed', passed: true, detail: 'not unsubscribed' });
  });

  it('counts sends of other journeys and lets a capped step fire once the cap window has passed', async () => {
    world.write('journeys.yaml', journey.replace('perDays: 2', 'perDays: 1').replace('daysBefore: 3 } }\n  - id: owner', 'daysBefore: 3 } }\n    window: 48h\n  - id: owner'));
    const c = await insertContact(db(), { email: 'again@customer.test', time_zone: 'UTC' });
    const id = await insertOpportunity(db(), { closing_date: '2026-12-10', primary_contact_id: c });
    // Another journey (another step id) wrote to this contact an hour ago.
    await db().insertInto('deliveries').values({ opportunity_id: 999, step_id: 'other', contact_id: c, recipient: 'again@customer.test', status: 'sent', decided_at: new Date('2026-12-07T08:00:00Z') }).execute();
    await world.tick('2026-12-07T09:00:00Z');
    await world.drain('2026-12-07T09:00:00Z');
    expect((await deliveries(db(), id)).filter((r) => r.step_id === 'three-days').map((r) => r.reason)).toEqual(['frequency_cap']);
    await world.tick('2026-12-08T08:30:00Z');
    await world.drain('2026-12-08T08:30:00Z');
    expect(steps()).toEqual(['again@customer.test three-days']);
  });
});

describe('quiet hours and weekends', () => {
  it('a step due inside quiet hours waits until they end in the recipient\'s zone', async () => {
    world.write('journeys.yaml', `
defaults:
  timeZone: UTC
  sendAt: "21:30"
  quietHours: { from: "20:00", to: "08:00" }
steps:
  - id: three-days
    template: t
    trigger: { closingDate: { daysBefore: 3 } }
`);
    const c = await insertContact(db(), { email: 'night@customer.test', time_zone: 'Europe/Brussels' });
    const id = await insertOpportunity(db(), { closing_date: '2026-12-10', primary_contact_id: c });
    // 21:30 on 2026-12-07 is quiet; the step moves to 08:00 CET on 2026-12-08 = 07:00Z.
    expect((await world.tick('2026-12-07T20:30:00Z')).enqueued).toBe(0);
    expect((await world.tick('2026-12-08T06:59:00Z')).enqueued).toBe(0);
    expect((await world.tick('2026-12-08T07:00:00Z')).enqueued).toBe(1);
    await world.drain('2026-12-08T07:00:00Z');
    expect(steps()).toEqual(['night@customer.test three-days']);
    expect((await deliveries(db(), id))[0]!.due_at!.toISOString()).toBe('2026-12-08T07:00:00.000Z');
  });

  it('a job that reaches a worker during quiet hours is held, not sent and not dropped', async () => {
    world.write('journeys.yaml', `
defaults:
  timeZone: UTC
  quietHours: { from: "20:00", to: "08:00" }
  window: 36h
steps:
  - id: three-days
    template: t
    trigger: { closingDate: { daysBefore: 3 } }
`);
    const c = await insertContact(db(), { email: 'late-worker@customer.test', time_zone: 'UTC' });
    await insertOpportunity(db(), { closing_date: '2026-12-10', primary_contact_id: c });
    expect((await world.tick('2026-12-07T09:00:00Z')).enqueued).toBe(1);
    // The backlog reaches the job at 22:00: quiet. Nothing is sent and nothing is recorded.
    await world.drain('2026-12-07T22:00:00Z');
    expect(steps()).toEqual([]);
    expect(await deliveries(db())).toEqual([]);
    expect((await world.tick('2026-12-07T23:00:00Z')).enqueued).toBe(0);
    expect((await world.tick('2026-12-08T08:00:00Z')).enqueued).toBe(1);
    await world.drain('2026-12-08T08:00:00Z');
    expect(steps()).toEqual(['late-worker@customer.test three-days']);
  });

  it('skipWeekends moves a Saturday step to Monday', async () => {
    world.write('journeys.yaml', `
defaults:
  timeZone: UTC
  skipWeekends: true
  window: 24h
steps:
  - id: three-days
    template: t
    trigger: { closingDate: { daysBefore: 3 } }
`);
    const c = await insertContact(db(), { email: 'weekend@customer.test', time_zone: 'America/New_York' });
    await insertOpportunity(db(), { closing_date: '2026-12-15', primary_contact_id: c });
    // 2026-12-12 is a Saturday: due Monday 2026-12-14 00:00 EST (-5) = 05:00Z.
    expect((await world.tick('2026-12-12T14:00:00Z')).enqueued).toBe(0);
    expect((await world.tick('2026-12-14T04:59:00Z')).enqueued).toBe(0);
    expect((await world.tick('2026-12-14T05:00:00Z')).enqueued).toBe(1);
  });
});

describe('recent activity', () => {
  it('a call logged the day before suppresses the step; a note does not', async () => {
    world.write('journeys.yaml', `
defaults:
  timeZone: UTC
steps:
  - id: three-days
    template: t
    trigger: { closingDate: { daysBefore: 3 } }
    skipIfRecentActivity: 2d
`);
    const c1 = await insertContact(db(), { email: 'called@customer.test', time_zone: 'UTC' });
    const c2 = await insertContact(db(), { email: 'noted@customer.test', time_zone: 'UTC' });
    const called = await insertOpportunity(db(), { closing_date: '2026-12-10', primary_contact_id: c1 });
    const noted = await insertOpportunity(db(), { closing_date: '2026-12-10', primary_contact_id: c2 });
    await db().insertInto('activities').values([
      { opportunity_id: called, kind: 'call', subject: 'Discussed options', done_at: new Date('2026-12-06T15:00:00Z') },
      { opportunity_id: noted, kind: 'note', subject: 'Likes beaches', done_at: new Date('2026-12-06T15:00:00Z') },
    ]).execute();
    await world.tick('2026-12-07T09:00:00Z');
    await world.drain('2026-12-07T09:00:00Z');
    expect(steps()).toEqual(['noted@customer.test three-days']);
    expect((await deliveries(db(), called)).map((r) => [r.reason, r.detail])).toEqual([
      ['recent_activity', 'call 1 done 2026-12-06T15:00:00.000Z, within 2d'],
    ]);
  });
});

describe('recipients by role', () => {
  it('every contact with the role receives it; consent and address are checked for each', async () => {
    world.write('journeys.yaml', `
defaults:
  timeZone: UTC
steps:
  - id: to-deciders
    to: { role: decision-maker }
    template: t
    trigger: { closingDate: { daysBefore: 3 } }
`);
    const primary = await insertContact(db(), { email: 'primary@customer.test' });
    const boss = await insertContact(db(), { email: 'boss@customer.test' });
    const cfo = await insertContact(db(), { email: 'cfo@customer.test', unsubscribed_at: new Date('2026-01-01T00:00:00Z') });
    const user = await insertContact(db(), { email: 'user@customer.test' });
    const id = await insertOpportunity(db(), { closing_date: '2026-12-10', primary_contact_id: primary });
    await db().insertInto('opportunity_contacts').values([
      { opportunity_id: id, contact_id: boss, role: 'decision-maker' },
      { opportunity_id: id, contact_id: cfo, role: 'decision-maker' },
      { opportunity_id: id, contact_id: user, role: 'user' },
    ]).execute();
    await world.tick('2026-12-07T09:00:00Z');
    await world.drain('2026-12-07T09:00:00Z');
    expect(steps()).toEqual(['boss@customer.test to-deciders']);
    expect((await deliveries(db(), id)).map((r) => [r.recipient, r.reason ?? r.status]).sort()).toEqual([
      ['boss@customer.test', 'sent'], ['cfo@customer.test', 'unsubscribed'],
    ]);
  });

  it('a role nobody has is no_contact', async () => {
    world.write('journeys.yaml', `
steps:
  - id: to-deciders
    to: { role: decision-maker }
    template: t
    trigger: { closingDate: { daysBefore: 3 } }
`);
    const id = await insertOpportunity(db(), { closing_date: '2026-12-10', primary_contact_id: await insertContact(db()) });
    await world.tick('2026-12-07T09:00:00Z');
    expect((await deliveries(db(), id)).map((r) => r.reason)).toEqual(['no_contact']);
  });
});

describe('closing dates that move', () => {
  const journey = (repeat: boolean) => `
defaults:
  timeZone: UTC
steps:
  - id: seven-days
    template: t
    trigger: { closingDate: { daysBefore: 7 } }${repeat ? '\n    repeat: onNewClosingDate' : ''}
`;

  it('a step is sent once per opportunity: moving the date after the send sends nothing again', async () => {
    world.write('journeys.yaml', journey(false));
    const id = await insertOpportunity(db(), { closing_date: '2026-12-14', primary_contact_id: await insertContact(db(), { email: 'once@customer.test' }) });
    await world.tick('2026-12-07T09:00:00Z');
    await world.drain('2026-12-07T09:00:00Z');
    await db().updateTable('opportunities').set({ closing_date: '2026-12-21' }).where('id', '=', id).execute();
    expect((await world.tick('2026-12-14T09:00:00Z')).enqueued).toBe(0);
    expect(steps()).toEqual(['once@customer.test seven-days']);
  });

  it('repeat: onNewClosingDate sends again for the new date', async () => {
    world.write('journeys.yaml', journey(true));
    const id = await insertOpportunity(db(), { closing_date: '2026-12-14', primary_contact_id: await insertContact(db(), { email: 'again@customer.test' }) });
    await world.tick('2026-12-07T09:00:00Z');
    await world.drain('2026-12-07T09:00:00Z');
    await db().updateTable('opportunities').set({ closing_date: '2026-12-21' }).where('id', '=', id).execute();
    expect((await world.tick('2026-12-10T09:00:00Z')).enqueued).toBe(0);
    expect((await world.tick('2026-12-14T09:00:00Z')).enqueued).toBe(1);
    await world.drain('2026-12-14T09:00:00Z');
    expect(steps()).toEqual(['again@customer.test seven-days', 'again@customer.test seven-days']);
    expect((await deliveries(db(), id)).map((r) => [r.occurrence, r.status])).toEqual([['2026-12-14', 'sent'], ['2026-12-21', 'sent']]);
  });

  it('moving the date before the send re-times the step and suppresses the job for the old date', async () => {
    world.write('journeys.yaml', journey(false));
    const id = await insertOpportunity(db(), { closing_date: '2026-12-14', primary_contact_id: await insertContact(db(), { email: 'moved@customer.test' }) });
    expect((await world.tick('2026-12-07T09:00:00Z')).enqueued).toBe(1);
    await db().updateTable('opportunities').set({ closing_date: '2026-12-24' }).where('id', '=', id).execute();
    await world.drain('2026-12-07T09:01:00Z');
    expect((await deliveries(db(), id)).map((r) => [r.reason, r.closing_date])).toEqual([['closing_date_changed', '2026-12-14']]);
    expect((await world.tick('2026-12-17T09:00:00Z')).enqueued).toBe(1);
    await world.drain('2026-12-17T09:00:00Z');
    expect(steps()).toEqual(['moved@customer.test seven-days']);
  });
});
