/**
 * A template that passes `templates check` with sample data but blows up on real data (a very
 * long title repeated by a loop) fails that one send as `template_error`: the worker carries on
 * and sends the next email. Real PostgreSQL, Redis and SMTP sink.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deliveries, insertContact, insertOpportunity } from '../helpers/fixtures.ts';
import { createWorld, type World } from '../helpers/world.ts';

const JOURNEY = `
defaults:
  timeZone: UTC
steps:
  - id: closing-in-3-days
    template: echo
    trigger: { closingDate: { daysBefore: 3 } }
`;

// Every key of the opportunity × every key again: 49 copies of the title. Harmless for "Trip to
// the USA"; more than 1 MiB for a 30,000-character title.
const ECHO = `---
subject: "About {{reference}}"
---
{{#each opportunity}}{{#each @root.opportunity}}<p>{{@root.reference}}</p>{{/each}}{{/each}}
`;

let world: World;

beforeAll(async () => {
  world = await createWorld({ shippedTemplates: false });
  world.write('journeys.yaml', JOURNEY);
  world.write('echo.hbs', ECHO);
});

afterAll(async () => {
  await world?.close();
});

describe('a render that exceeds the limits on real data', () => {
  it('is recorded as template_error, and the other email is still sent', async () => {
    const huge = await insertOpportunity(world.database.db, {
      title: `A very long request ${'x'.repeat(30_000)}`, closing_date: '2026-12-10',
      primary_contact_id: await insertContact(world.database.db, { email: 'huge@customer.test', time_zone: 'UTC' }),
    });
    const normal = await insertOpportunity(world.database.db, {
      title: 'Trip to the USA', closing_date: '2026-12-10',
      primary_contact_id: await insertContact(world.database.db, { email: 'normal@customer.test', time_zone: 'UTC' }),
    });
    expect((await world.tick('2026-12-07T09:00:00Z')).enqueued).toBe(2);
    const totals = await world.drain('2026-12-07T09:00:30Z');
    expect(totals).toMatchObject({ sent: 1, failed: 1 });
    expect(world.smtp.received.map((m) => m.envelopeTo[0])).toEqual(['normal@customer.test']);
    const rows = await deliveries(world.database.db);
    expect(rows.find((r) => r.opportunity_id === huge)).toMatchObject({ status: 'failed', reason: 'template_error' });
    expect(rows.find((r) => r.opportunity_id === huge)!.detail).toMatch(/^echo\.hbs:4:\d+: the email is larger than 1048576 bytes/);
    expect(rows.find((r) => r.opportunity_id === normal)).toMatchObject({ status: 'sent' });
  });
});
