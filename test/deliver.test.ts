/**
 * End to end against the real services: rows written through the SQL contract, `tick` then
 * `drain` as of an instant, and what arrived at a real SMTP server and what `deliveries` says.
 */
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { pino } from 'pino';
import { createWorld, type World } from './helpers/world.ts';
import { DeferredError, deliver, type DeliverDeps } from '../src/deliver.ts';
import { deliverJobId, deliverJobOptions, type DeliverJob } from '../src/queue/queues.ts';
import { claimSend } from '../src/db/deliveries.ts';
import { keepSend, keptSends, UnrecordedSends, type UnrecordedSend } from '../src/send-outcome.ts';
import { SealError } from '../src/seal.ts';
import { startDeliverWorker } from '../workers/deliver-worker.ts';
import { fixedClock } from '../src/clock.ts';
import { smtpMailer, type Mailer } from '../src/email/mailer.ts';
import { silentLogger } from '../src/logger.ts';
import { createDb } from '../src/db/database.ts';
import { until } from './helpers/daemon.ts';
import { deliveries, heldCrmChange, insertContact, insertOpportunity, waitingOnLock } from './helpers/fixtures.ts';

const JOURNEY = `
defaults:
  timeZone: UTC
steps:
  - id: closing-in-3-days
    template: reminder
    trigger: { closingDate: { daysBefore: 3 } }
    stages: [qualification, proposal]
    minAmount: 100
`;

const REMINDER = `---
subject: "Your request {{reference}}: 3 days left"
---
<p>Hello {{contact.firstName}},</p>
<p>About <b>{{reference}}</b>{{#if opportunity.amount}} ({{formatMoney opportunity.amount opportunity.currency}}){{/if}}.</p>
<p>Closing {{formatDate opportunity.closingDate}}.</p>
`;

// Closing 2026-12-10; 3 days before at 09:00 Brussels (CET, +1) is 2026-12-07T08:00:00Z.
const DUE = '2026-12-07T08:00:00Z';

let world: World;

async function journeyWorld(env?: Record<string, string>): Promise<World> {
  const w = await createWorld({ shippedTemplates: false, env });
  w.write('journeys.yaml', JOURNEY);
  w.write('reminder.hbs', REMINDER);
  return w;
}

beforeAll(async () => {
  world = await journeyWorld();
});

afterAll(async () => {
  await world?.close();
});

/**
 * For a describe whose tests drain a job's first attempt, then its retry: its own world, whose
 * retries wait a minute instead of 200 ms. A first drain slowed past 200 ms by a loaded machine
 * would otherwise meet the retry too (its worker takes a delayed job once due); the test promotes
 * the retry instead (`promoteRetry`), so the second drain finds it waiting.
 */
function withSlowRetries(): void {
  let fileWorld: World;
  beforeAll(async () => {
    fileWorld = world;
    world = await journeyWorld({ NUDGE_RETRY_BASE_MS: '60000' });
  });
  afterAll(async () => {
    await world.close();
    world = fileWorld;
  });
}

/** The one job waiting out its backoff, made ready now. */
async function promoteRetry(): Promise<void> {
  const delayed = await world.rt.queue.getDelayed();
  expect(delayed).toHaveLength(1);
  await delayed[0]!.promote();
}

beforeEach(() => world.reset());

async function dueOpportunity(overrides: { title?: string; amount?: string | null } = {}) {
  const contactId = await insertContact(world.database.db, { email: 'ada@customer.test', first_name: 'Ada', time_zone: 'Europe/Brussels' });
  const opportunityId = await insertOpportunity(world.database.db, {
    title: overrides.title ?? 'Trip to the USA', amount: overrides.amount === undefined ? '12000.00' : overrides.amount,
    closing_date: '2026-12-10', stage: 'qualification', primary_contact_id: contactId,
  });
  return { contactId, opportunityId };
}

const SECRET = 'test-secret-0123456789abcdef';
const job = (opportunityId: number) => ({ opportunityId, stepId: 'closing-in-3-days', closingDate: '2026-12-10', occurrence: '' });

/** What a worker passes to `deliver`, with the test's mailer. */
async function deps(mailer: Mailer, handoverTimeoutMs?: number): Promise<DeliverDeps> {
  const content = await world.rt.content();
  return {
    db: world.database.db, mailer, templates: () => content.templates, journey: () => content.journey,
    compose: { mailFrom: 'Acme <sales@acme.test>', publicUrl: 'https://nudge.acme.test', secret: SECRET },
    logger: silentLogger, ...(handoverTimeoutMs === undefined ? {} : { handoverTimeoutMs }),
  };
}

describe('a due step', () => {
  it('is not enqueued a minute before its due time, and is sent once at it', async () => {
    const { opportunityId } = await dueOpportunity();
    expect((await world.tick('2026-12-07T07:59:00Z')).enqueued).toBe(0);
    expect((await world.tick(DUE)).enqueued).toBe(1);
    const totals = await world.drain('2026-12-07T08:00:30Z');
    expect(totals.sent).toBe(1);
    expect(world.smtp.received).toHaveLength(1);
    const mail = world.smtp.received[0]!;
    expect(mail.envelopeTo).toEqual(['ada@customer.test']);
    expect(mail.parsed.subject).toBe('Your request Trip to the USA: 3 days left');
    expect(mail.parsed.headers.get('x-nudge-opportunity')).toBe(String(opportunityId));
    expect(mail.parsed.headers.get('x-nudge-step')).toBe('closing-in-3-days');
    expect(mail.parsed.messageId).toMatch(new RegExp(`^<[0-9a-f]{32}\\.${opportunityId}@acme\\.test>$`));
    expect(mail.raw).toMatch(/^List-Unsubscribe-Post: List-Unsubscribe=One-Click\r?$/m);
    const headers = mail.raw.split('\r\n\r\n')[0]!.replace(/\r\n[ \t]+/g, ' ');
    expect(headers).toMatch(/List-Unsubscribe: <https:\/\/nudge\.acme\.test\/unsubscribe\/c\d+\.[A-Za-z0-9_-]{43}>/);
    expect(mail.parsed.text).toContain('About Trip to the USA');
    expect(mail.parsed.html).toContain('December 10, 2026');

    const rows = await deliveries(world.database.db);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      opportunity_id: opportunityId, step_id: 'closing-in-3-days', recipient: 'ada@customer.test', status: 'sent',
      reason: null, closing_date: '2026-12-10', occurrence: '', transport: 'smtp', message_id: mail.parsed.messageId,
    });
    expect(rows[0]!.due_at!.toISOString()).toBe('2026-12-07T08:00:00.000Z');
    expect(rows[0]!.decided_at.toISOString()).toBe('2026-12-07T08:00:30.000Z');
  });

  it('is not sent again by later ticks, and re-scanning unchanged data adds no rows', async () => {
    await dueOpportunity();
    await world.tick(DUE);
    await world.drain(DUE);
    for (const at of ['2026-12-07T08:01:00Z', '2026-12-07T12:00:00Z', '2026-12-08T07:59:00Z']) {
      expect((await world.tick(at)).enqueued).toBe(0);
      await world.drain(at);
    }
    expect(world.smtp.received).toHaveLength(1);
    expect(await deliveries(world.database.db)).toHaveLength(1);
  });

  it('escapes a hostile title in HTML and strips CR/LF from the subject', async () => {
    await dueOpportunity({ title: 'Trip <script>alert(1)</script> & "co"\r\nBcc: victim@evil.test' });
    await world.tick(DUE);
    await world.drain(DUE);
    const mail = world.smtp.received[0]!;
    expect(mail.parsed.subject).toBe('Your request Trip <script>alert(1)</script> & "co" Bcc: victim@evil.test: 3 days left');
    expect(mail.parsed.headers.get('bcc')).toBeUndefined();
    expect(mail.envelopeTo).toEqual(['ada@customer.test']);
    expect(mail.parsed.html).toContain('Trip &lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;co&quot;');
    expect(mail.parsed.html).not.toContain('<script>');
  });

  it('renders a blank amount as nothing', async () => {
    const contactId = await insertContact(world.database.db, { email: 'bo@customer.test' });
    // No minimum on this journey, so the blank amount is eligible.
    world.write('journeys.yaml', JOURNEY.replace('    minAmount: 100\n', ''));
    try {
      await insertOpportunity(world.database.db, { amount: null, closing_date: '2026-12-10', primary_contact_id: contactId });
      await world.tick('2026-12-07T09:00:00Z');
      await world.drain('2026-12-07T09:00:00Z');
      const html = world.smtp.received[0]!.parsed.html as string;
      expect(html).toContain('About <b>Trip to the USA</b>.');
      for (const bad of ['NaN', 'null', 'undefined', '€0', '0.00']) expect(html).not.toContain(bad);
    } finally {
      world.write('journeys.yaml', JOURNEY);
    }
  });
});

describe('changes between tick and work are honoured at send time', () => {
  const cases: [string, (ids: { contactId: number; opportunityId: number }) => Promise<unknown>, string][] = [
    ['the opportunity is won', ({ opportunityId }) => world.database.db.updateTable('opportunities').set({ stage: 'won' }).where('id', '=', opportunityId).execute(), 'opportunity_closed'],
    ['the opportunity is lost', ({ opportunityId }) => world.database.db.updateTable('opportunities').set({ stage: 'lost' }).where('id', '=', opportunityId).execute(), 'opportunity_closed'],
    ['the closing date moved', ({ opportunityId }) => world.database.db.updateTable('opportunities').set({ closing_date: '2026-12-20' }).where('id', '=', opportunityId).execute(), 'closing_date_changed'],
    ['the stage left the step\'s stages', ({ opportunityId }) => world.database.db.updateTable('opportunities').set({ stage: 'negotiation' }).where('id', '=', opportunityId).execute(), 'stage_not_eligible'],
    ['the amount was blanked under a minimum', ({ opportunityId }) => world.database.db.updateTable('opportunities').set({ amount: null }).where('id', '=', opportunityId).execute(), 'stage_not_eligible'],
    ['the primary contact was removed', ({ opportunityId }) => world.database.db.updateTable('opportunities').set({ primary_contact_id: null }).where('id', '=', opportunityId).execute(), 'no_contact'],
    ['the contact lost its address', ({ contactId }) => world.database.db.updateTable('contacts').set({ email: null }).where('id', '=', contactId).execute(), 'invalid_email'],
    ['the address became invalid', ({ contactId }) => world.database.db.updateTable('contacts').set({ email: 'ada at customer' }).where('id', '=', contactId).execute(), 'invalid_email'],
    ['the contact unsubscribed', ({ contactId }) => world.database.db.updateTable('contacts').set({ unsubscribed_at: new Date('2026-12-07T07:00:00Z') }).where('id', '=', contactId).execute(), 'unsubscribed'],
    ['the contact bounced', ({ contactId }) => world.database.db.updateTable('contacts').set({ bounced_at: new Date('2026-12-07T07:00:00Z') }).where('id', '=', contactId).execute(), 'bounced'],
    ['the opportunity was deleted', ({ opportunityId }) => world.database.db.deleteFrom('opportunities').where('id', '=', opportunityId).execute(), 'opportunity_deleted'],
  ];

  it.each(cases)('%s', async (_what, change, reason) => {
    const ids = await dueOpportunity();
    expect((await world.tick(DUE)).enqueued).toBe(1);
    await change(ids);
    // 09:00Z: due both in Brussels (08:00Z) and in defaults.timeZone (UTC), used when nobody is left.
    const totals = await world.drain('2026-12-07T09:00:00Z');
    expect(world.smtp.received).toHaveLength(0);
    expect(totals.sent).toBe(0);
    const rows = await deliveries(world.database.db);
    expect(rows.map((r) => [r.status, r.reason])).toEqual([['suppressed', reason]]);
    expect(rows[0]!.decided_at.toISOString()).toBe('2026-12-07T09:00:00.000Z');
  });

  it('a job that finds its window closed records expired', async () => {
    await dueOpportunity();
    await world.tick(DUE);
    await world.drain('2026-12-08T08:00:00Z');
    expect(world.smtp.received).toHaveLength(0);
    expect((await deliveries(world.database.db)).map((r) => r.reason)).toEqual(['expired']);
  });
});

describe('a read that a CRM change of the roles overtook', () => {
  it('is made again at once, and the step sent once', async () => {
    const ids = await dueOpportunity();
    const buyer = await insertContact(world.database.db, { email: 'bob@customer.test' });
    await world.database.db.insertInto('opportunity_contacts').values({ opportunity_id: ids.opportunityId, contact_id: buyer, role: 'buyer' }).execute();
    // The CRM renames the opportunity and removes the role in one transaction, committed while
    // the worker waits for the opportunity's lock: its first read has the new title and the old role.
    const { db: crmDb } = createDb(world.database.url, { max: 1 });
    try {
      const crm = await heldCrmChange(crmDb, async (trx) => {
        await trx.updateTable('opportunities').set({ title: 'Trip to Canada' }).where('id', '=', ids.opportunityId).execute();
        await trx.deleteFrom('opportunity_contacts').where('opportunity_id', '=', ids.opportunityId).execute();
      });
      const mailer = smtpMailer(world.smtp.url);
      const delivering = deliver(await deps(mailer), job(ids.opportunityId), new Date(DUE));
      delivering.catch(() => {});
      await until('the worker to wait on the opportunity\'s lock', async () => (await waitingOnLock(world.database.db, '%with locked as%')) > 0, 4_000);
      await crm.commit();
      expect(await delivering).toMatchObject({ sent: 1 });
      await mailer.close();
    } finally {
      await crmDb.destroy();
    }
    expect(world.smtp.received).toHaveLength(1);
    expect((await deliveries(world.database.db)).map((r) => [r.status, r.reason])).toEqual([['sent', null]]);
  });
});

// A worker's send is one transaction from its decision to the handover: the rows it decided on
// stay locked until the SMTP server is ready for the message and the claim is committed.
describe('the rows a send was decided on, while the SMTP transaction is set up', () => {
  /** Statements of this database waiting for a lock, whose text starts with `prefix`. */
  const waitingOn = (prefix: string) => waitingOnLock(world.database.db, `${prefix}%`);

  type Ids = { contactId: number; opportunityId: number };
  const writes: [string, (ids: Ids) => Promise<unknown>, string, (ids: Ids) => Promise<boolean>][] = [
    ['the contact unsubscribes',
      ({ contactId }) => world.database.db.updateTable('contacts').set({ unsubscribed_at: new Date(DUE) }).where('id', '=', contactId).execute(),
      'update "contacts"',
      async ({ contactId }) => (await world.database.db.selectFrom('contacts').select('unsubscribed_at').where('id', '=', contactId).executeTakeFirstOrThrow()).unsubscribed_at !== null],
    ['the opportunity is won',
      ({ opportunityId }) => world.database.db.updateTable('opportunities').set({ stage: 'won' }).where('id', '=', opportunityId).execute(),
      'update "opportunities"',
      async ({ opportunityId }) => (await world.database.db.selectFrom('opportunities').select('stage').where('id', '=', opportunityId).executeTakeFirstOrThrow()).stage === 'won'],
  ];

  it.each(writes)('%s during the send: the write waits until the message is handed over, then commits; one email', async (_what, write, statement, landed) => {
    const ids = await dueOpportunity();
    const real = smtpMailer(world.smtp.url);
    let written: Promise<number> | null = null;
    let writtenAtHandover: boolean | null = null;
    let handedOverAt = 0;
    const mailer: Mailer = {
      transport: 'smtp',
      async send(email, options) {
        // The CRM writes while the worker's SMTP connection is being set up; not awaited here.
        let done = false;
        written = write(ids).then(() => { done = true; return performance.now(); });
        await until('the CRM write to wait on the worker\'s lock', async () => done || (await waitingOn(statement)) > 0, 4_000);
        return real.send(email, {
          beforeHandover: async (complete) => {
            writtenAtHandover = done;
            const go = await options!.beforeHandover!(complete);
            handedOverAt = performance.now();
            return go;
          },
        });
      },
      close: () => real.close(),
    };
    const result = await deliver(await deps(mailer), job(ids.opportunityId), new Date(DUE));
    await real.close();
    const writtenAt = await written!;
    expect(writtenAtHandover).toBe(false);
    expect(result).toMatchObject({ sent: 1, suppressed: 0 });
    // Right after: the write waited for the claim's commit, not for the end of the send.
    expect(writtenAt - handedOverAt).toBeLessThan(1_000);
    expect(world.smtp.received).toHaveLength(1);
    expect((await deliveries(world.database.db)).map((r) => [r.status, r.reason])).toEqual([['sent', null]]);
    // The write landed: the next decision about this opportunity sees it.
    expect(await landed(ids)).toBe(true);
  });

  it('a server that never asks for the message: the worker lets go after the handover timeout, claims nothing, and the retry sends', async () => {
    const { contactId, opportunityId } = await dueOpportunity();
    world.smtp.stall(true);
    const mailer = smtpMailer(world.smtp.url);
    try {
      const first = deliver(await deps(mailer, 500), job(opportunityId), new Date(DUE)).then(() => null, (e: Error) => e);
      await until('the server to hold RCPT TO', () => world.smtp.stalled() > 0, 10_000);
      // A CRM write to the contact the worker share-locked: it waits at most about the timeout.
      const t = performance.now();
      await world.database.db.updateTable('contacts').set({ first_name: 'Adeline' }).where('id', '=', contactId).execute();
      expect(performance.now() - t).toBeLessThan(500 + 1_000);
      expect(await deliveries(world.database.db)).toEqual([]);
      // The server finally asks for the message: the gate says no, and the job is deferred.
      world.smtp.stall(false);
      expect(await first).toBeInstanceOf(DeferredError);
      expect(world.smtp.received).toHaveLength(0);
      expect(await deliveries(world.database.db)).toEqual([]);
      // The retry decides on the rows as they are now.
      const retry = await deliver(await deps(mailer), job(opportunityId), new Date(DUE));
      expect(retry.sent).toBe(1);
      expect(world.smtp.received).toHaveLength(1);
      expect(world.smtp.received[0]!.parsed.text).toContain('Hello Adeline');
      expect((await deliveries(world.database.db)).map((r) => r.status)).toEqual(['sent']);
    } finally {
      await mailer.close();
    }
  });

  it('two jobs for one owner step, decided at once, both waiting at the server: one email, the other claims nothing', async () => {
    world.write('owner-reminder.hbs', '---\nsubject: "{{reference}} closes in 3 days"\n---\n<p>{{reference}}</p>\n');
    world.write('journeys.yaml', `${JOURNEY}
  - id: owner-3-days
    to: owner
    template: owner-reminder
    trigger: { closingDate: { daysBefore: 3 } }
`);
    const mailer = smtpMailer(world.smtp.url);
    try {
      // No contact at all, so no contact lock either: only the unique index can tell the two apart.
      const opportunityId = await insertOpportunity(world.database.db, { closing_date: '2026-12-10', owner_email: 'sam@acme.test' });
      // Owner steps are due at 09:00 in defaults.timeZone (UTC).
      const ownerJob = { opportunityId, stepId: 'owner-3-days', closingDate: '2026-12-10', occurrence: '' };
      world.smtp.stall(true);
      const both = [1, 2].map(async () => deliver(await deps(mailer), ownerJob, new Date('2026-12-07T09:00:00Z')));
      await until('both sends to wait at RCPT TO', () => world.smtp.stalled() === 2, 10_000);
      world.smtp.stall(false);
      const results = await Promise.all(both);
      expect(results.map((r) => [r.sent, r.skipped]).sort()).toEqual([[0, 1], [1, 0]]);
      expect(world.smtp.received.map((m) => m.envelopeTo)).toEqual([['sam@acme.test']]);
      expect((await deliveries(world.database.db)).map((r) => [r.step_id, r.status])).toEqual([['owner-3-days', 'sent']]);
    } finally {
      world.smtp.stall(false);
      await mailer.close();
      world.write('journeys.yaml', JOURNEY);
    }
  });

  it('a transaction lost before the handover commits nothing and sends nothing', async () => {
    const { opportunityId } = await dueOpportunity();
    world.smtp.stall(true);
    const mailer = smtpMailer(world.smtp.url);
    try {
      const sending = deliver(await deps(mailer), job(opportunityId), new Date(DUE)).then(() => null, (e: Error) => e);
      await until('the server to hold RCPT TO', () => world.smtp.stalled() > 0, 10_000);
      // The worker's transaction, idle while SMTP sets up, loses its connection.
      const cut = await sql`select pg_terminate_backend(pid) from pg_stat_activity
        where datname = current_database() and state = 'idle in transaction'`.execute(world.database.db);
      expect(cut.rows).toHaveLength(1);
      world.smtp.stall(false);
      const error = await sending;
      expect(error).toBeInstanceOf(Error);
      expect(error).not.toBeInstanceOf(DeferredError);
      expect(world.smtp.received).toHaveLength(0);
      expect(await deliveries(world.database.db)).toEqual([]);
    } finally {
      await mailer.close();
    }
  });
});

/**
 * A deferred constraint trigger failing the COMMIT of the first `times` transactions that insert
 * a claim, as a serialization failure (40001) would: PostgreSQL has the COMMIT (the message's
 * final dot has gone with it) and answers with an error. P0001 instead is an error that no retry
 * can mend.
 */
async function failClaimCommits(times: number, errcode: '40001' | 'P0001' = '40001'): Promise<void> {
  await sql`create sequence fail_once`.execute(world.database.db);
  await sql.raw(`create function fail_first_claim() returns trigger language plpgsql as $$
    begin if nextval('fail_once') <= ${times} then raise exception 'commit refused for the test (claim %)', new.id using errcode = '${errcode}'; end if; return null; end $$`).execute(world.database.db);
  await sql`create constraint trigger fail_first_claim after insert on deliveries deferrable initially deferred
    for each row when (new.status = 'unknown') execute function fail_first_claim()`.execute(world.database.db);
}

async function dropFailClaimCommits(): Promise<void> {
  await sql`drop trigger fail_first_claim on deliveries`.execute(world.database.db);
  await sql`drop function fail_first_claim(); drop sequence fail_once`.execute(world.database.db);
}

/** A trigger failing the first `times` updates to `sent` with `errcode`; returns how many it saw. */
async function failSentUpdates(times: number, errcode: string): Promise<() => Promise<number>> {
  await sql`create sequence sent_updates`.execute(world.database.db);
  await sql.raw(`create function fail_sent() returns trigger language plpgsql as $$
    begin if nextval('sent_updates') <= ${times} then raise exception 'update refused for the test' using errcode = '${errcode}'; end if; return new; end $$`).execute(world.database.db);
  await sql`create trigger fail_sent before update on deliveries for each row when (new.status = 'sent') execute function fail_sent()`.execute(world.database.db);
  return async () => Number((await sql<{ n: string }>`select last_value as n from sent_updates`.execute(world.database.db)).rows[0]!.n);
}

async function dropFailSentUpdates(): Promise<void> {
  await sql`drop trigger if exists fail_sent on deliveries`.execute(world.database.db);
  await sql`drop function if exists fail_sent(); drop sequence if exists sent_updates`.execute(world.database.db);
}

/** A logger that keeps its lines, parsed, and shows each to `onLine` as it is written. */
function keptLogger(onLine: (entry: Record<string, unknown>) => void = () => {}) {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, {
    write: (line: string) => {
      const entry = JSON.parse(line) as Record<string, unknown>;
      lines.push(entry);
      onLine(entry);
    },
  });
  return { logger, lines };
}

describe('a decision whose transaction does not commit', () => {
  it('is not logged: the retry that writes its row logs it, once', async () => {
    // A role step: one recipient unsubscribed (suppressed), the other sent, in one transaction.
    world.write('journeys.yaml', `
defaults:
  timeZone: UTC
steps:
  - id: closing-in-3-days
    to: { role: decision-maker }
    template: reminder
    trigger: { closingDate: { daysBefore: 3 } }
`);
    const mailer = smtpMailer(world.smtp.url);
    try {
      const db = world.database.db;
      const boss = await insertContact(db, { email: 'boss@customer.test', first_name: 'Bo', time_zone: 'Europe/Brussels' });
      const cfo = await insertContact(db, { email: 'cfo@customer.test', time_zone: 'Europe/Brussels', unsubscribed_at: new Date('2026-01-01T00:00:00Z') });
      const opportunityId = await insertOpportunity(db, { closing_date: '2026-12-10', stage: 'qualification', primary_contact_id: boss });
      await db.insertInto('opportunity_contacts').values([
        { opportunity_id: opportunityId, contact_id: boss, role: 'decision-maker' },
        { opportunity_id: opportunityId, contact_id: cfo, role: 'decision-maker' },
      ]).execute();
      const { logger, lines } = keptLogger();
      // The server never asks for the boss's message: the transaction, suppression and all, rolls back.
      world.smtp.stall(true);
      const first = deliver({ ...(await deps(mailer, 300)), logger }, job(opportunityId), new Date(DUE)).then(() => null, (e: Error) => e);
      await until('the server to hold RCPT TO', () => world.smtp.stalled() > 0, 10_000);
      await new Promise((r) => setTimeout(r, 600));
      world.smtp.stall(false);
      expect(await first).toBeInstanceOf(DeferredError);
      expect(await deliveries(db)).toEqual([]);
      // Before, "suppressed" was logged for the cfo here, a row that was never written.
      expect(lines.filter((l) => l.msg === 'suppressed')).toEqual([]);

      expect(await deliver({ ...(await deps(mailer)), logger }, job(opportunityId), new Date(DUE))).toMatchObject({ sent: 1, suppressed: 1 });
      expect(lines.filter((l) => l.msg === 'suppressed').map((l) => [l.contactId, l.reason])).toEqual([[cfo, 'unsubscribed']]);
      expect((await deliveries(db)).map((r) => [r.recipient, r.reason ?? r.status]).sort()).toEqual([
        ['boss@customer.test', 'sent'], ['cfo@customer.test', 'unsubscribed'],
      ]);
    } finally {
      await mailer.close();
      world.write('journeys.yaml', JOURNEY);
    }
  });
});

describe('a claim whose COMMIT fails once the message is complete', () => {
  it('is recorded again after the send, trying again while that fails: one email, one row, sent', async () => {
    const { opportunityId } = await dueOpportunity();
    // The first COMMIT that carries a claim fails, and so does the worker's first attempt to
    // record the claim again, which must try once more.
    await failClaimCommits(2);
    const mailer = smtpMailer(world.smtp.url);
    try {
      const error = await deliver(await deps(mailer), job(opportunityId), new Date(DUE)).then(() => null, (e: Error) => e);
      expect(error?.message).toMatch(/commit refused for the test/);
      await until('the message to arrive', () => world.smtp.received.length === 1, 10_000);
      // Written again under a new id drawn from the table's sequence (a write whose answer is lost
      // is found by that id on the next try), never the lost claim's own: after a crash,
      // PostgreSQL may give that one to another row.
      const lostId = Number(/claim (\d+)/.exec(error!.message)?.[1]);
      const rows = await deliveries(world.database.db);
      expect(rows.map((r) => [r.status, r.handed_at !== null])).toEqual([['sent', true]]);
      expect(rows[0]!.id).toBeGreaterThan(lostId);
      // The job's retry finds the step spent.
      expect(await deliver(await deps(mailer), job(opportunityId), new Date(DUE))).toMatchObject({ sent: 0, skipped: 1 });
      expect(world.smtp.received).toHaveLength(1);
    } finally {
      await mailer.close();
      await dropFailClaimCommits();
    }
  });
});

/** A claim's row for the due opportunity's send (decided at its due time), as a worker writes or keeps it. */
function keptRow(opportunityId: number, contactId: number | null) {
  return {
    opportunity_id: opportunityId, step_id: 'closing-in-3-days', contact_id: contactId, recipient: 'ada@customer.test', due_at: new Date(DUE),
    decided_at: new Date(DUE), closing_date: '2026-12-10', occurrence: '', message_id: '<kept@acme.test>', template: 'reminder.hbs', transport: 'smtp',
  };
}

describe('a completed send that PostgreSQL will not record', () => {
  withSlowRetries();

  /** The job's data holding one kept send, sealed (under `secret`), as Redis would hold it: through JSON. */
  function withKept(opportunityId: number, send: UnrecordedSend, secret = SECRET, sealedFor = job(opportunityId)): DeliverJob {
    return JSON.parse(JSON.stringify({ ...job(opportunityId), unrecorded: [keepSend(secret, sealedFor, send)] })) as DeliverJob;
  }

  /** The kept sends of the job's data, opened. */
  const opened = (data: DeliverJob) => keptSends({ secret: SECRET }, data);

  /** A `keep` that holds the job's data as Redis would: through JSON. */
  function keptJob(start: DeliverJob) {
    const kept = { data: start, writes: 0 };
    const keep = async (data: DeliverJob) => {
      kept.data = JSON.parse(JSON.stringify(data)) as DeliverJob;
      kept.writes += 1;
    };
    return { kept, keep };
  }

  it("is kept in the job when its claim cannot be written again, and the job's retry records it as sent: one email", async () => {
    const { opportunityId } = await dueOpportunity();
    // The claim's COMMIT fails after the final dot went, and so does writing the claim again,
    // with an error no retry mends: the attempt gives up with the message delivered.
    await failClaimCommits(2, 'P0001');
    const { kept, keep } = keptJob(job(opportunityId));
    const mailer = smtpMailer(world.smtp.url);
    try {
      const error = await deliver(await deps(mailer), kept.data, new Date(DUE), keep).then(() => null, (e: Error) => e);
      expect(error?.message).toMatch(/commit refused for the test/);
      await until('the message to arrive', () => world.smtp.received.length === 1, 10_000);
      expect(await deliveries(world.database.db)).toEqual([]);
      expect(opened(kept.data).map((u) => [u.row.recipient, u.outcome.kind])).toEqual([['ada@customer.test', 'accepted']]);
      // Sealed: the queue's payload names no one.
      expect(JSON.stringify(kept.data)).not.toMatch(/ada@customer\.test|Trip to the USA/);
      // The retry, later, records it: without the kept send it would find the step due and send again.
      const { logger, lines } = keptLogger();
      expect(await deliver({ ...(await deps(mailer)), logger }, kept.data, new Date('2026-12-07T08:05:00Z'), keep)).toMatchObject({ sent: 1, skipped: 0 });
      expect((await deliveries(world.database.db)).map((r) => [r.status, r.opportunity_id, r.decided_at.toISOString()]))
        .toEqual([['sent', opportunityId, DUE.replace('Z', '.000Z')]]);
      expect(kept.data.unrecorded).toBeUndefined();
      expect(lines.map((l) => l.msg)).toContain('recording a send an earlier attempt completed but could not record; not sending it again');
      expect(JSON.stringify(lines)).not.toMatch(/ada@customer\.test|Trip to the USA/);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(world.smtp.received).toHaveLength(1);
    } finally {
      await mailer.close();
      await dropFailClaimCommits();
    }
  });

  it('is kept in the job when its outcome cannot be written, and the retry records it as sent', async () => {
    const { opportunityId } = await dueOpportunity();
    // The first update to `sent` fails with an error no retry mends; the retry's goes through.
    await failSentUpdates(1, 'P0001');
    const { kept, keep } = keptJob(job(opportunityId));
    const mailer = smtpMailer(world.smtp.url);
    try {
      const error = await deliver(await deps(mailer), kept.data, new Date(DUE), keep).then(() => null, (e: Error) => e);
      expect(error?.message).toMatch(/update refused for the test/);
      expect((await deliveries(world.database.db)).map((r) => r.status)).toEqual(['unknown']);
      expect(opened(kept.data).map((u) => u.outcome.kind)).toEqual(['accepted']);
      expect(await deliver(await deps(mailer), kept.data, new Date(DUE), keep)).toMatchObject({ sent: 1, skipped: 0 });
      expect((await deliveries(world.database.db)).map((r) => r.status)).toEqual(['sent']);
      expect(kept.data.unrecorded).toBeUndefined();
      expect(world.smtp.received).toHaveLength(1);
    } finally {
      await mailer.close();
      await dropFailSentUpdates();
    }
  });

  it('is kept in the job from the moment its claim is lost: a second worker taking the job meanwhile sends nothing', async () => {
    const { opportunityId } = await dueOpportunity();
    // The claim's COMMIT fails, then writing it again fails for a while (a restart, in life):
    // the first worker keeps trying, and a second takes the job from Redis, as after a lapsed lock.
    await failClaimCommits(4);
    const { kept, keep } = keptJob(job(opportunityId));
    const mailer = smtpMailer(world.smtp.url);
    try {
      const first = deliver(await deps(mailer), kept.data, new Date(DUE), keep).then(() => null, (e: Error) => e);
      await until('the send to be kept in the job', () => (kept.data.unrecorded?.length ?? 0) > 0, 10_000);
      // Whichever worker writes the claim first records the send; the other finds the step spent.
      await deliver(await deps(mailer), kept.data, new Date('2026-12-07T08:00:05Z'), keep);
      expect((await first)?.message).toMatch(/commit refused for the test/);
      const rows = await deliveries(world.database.db);
      expect(rows).toHaveLength(1);
      expect(['sent', 'unknown']).toContain(rows[0]!.status);
      expect(kept.data.unrecorded).toBeUndefined();
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(world.smtp.received).toHaveLength(1);
    } finally {
      await mailer.close();
      await dropFailClaimCommits();
    }
  });

  it('kept with a deferral (the server refused the message for now): the retry sends it again, once', async () => {
    const { opportunityId, contactId } = await dueOpportunity();
    const { kept, keep } = keptJob(withKept(opportunityId, { claimId: 1_000_000, row: keptRow(opportunityId, contactId), outcome: { kind: 'deferred', reason: '451 4.3.0 try later' } }));
    const mailer = smtpMailer(world.smtp.url);
    try {
      expect(await deliver(await deps(mailer), kept.data, new Date(DUE), keep)).toMatchObject({ sent: 1, unknown: 0 });
      expect(kept.writes).toBe(1);
      expect((await deliveries(world.database.db)).map((r) => [r.status, r.message_id === '<kept@acme.test>'])).toEqual([['sent', false]]);
      expect(kept.data.unrecorded).toBeUndefined();
      expect(world.smtp.received).toHaveLength(1);
    } finally {
      await mailer.close();
    }
  });

  it('kept with a deferral whose claim is still there: the claim is released and the send goes again, once', async () => {
    const { opportunityId, contactId } = await dueOpportunity();
    const row = keptRow(opportunityId, contactId);
    const claimId = await claimSend(world.database.db, row);
    const { kept, keep } = keptJob(withKept(opportunityId, { claimId: claimId!, row, outcome: { kind: 'deferred', reason: '451 4.3.0 try later' } }));
    const mailer = smtpMailer(world.smtp.url);
    try {
      expect(await deliver(await deps(mailer), kept.data, new Date(DUE), keep)).toMatchObject({ sent: 1, unknown: 0 });
      expect((await deliveries(world.database.db)).map((r) => [r.status, r.id === claimId])).toEqual([['sent', false]]);
      expect(kept.data.unrecorded).toBeUndefined();
      expect(world.smtp.received).toHaveLength(1);
    } finally {
      await mailer.close();
    }
  });

  it("kept under a claim id another send's claim now holds (given again after a crash): that claim is neither released nor taken", async () => {
    const mailer = smtpMailer(world.smtp.url);
    try {
      for (const outcome of [{ kind: 'deferred', reason: '451 4.3.0 try later' }, { kind: 'accepted', response: '250 ok' }] as const) {
        world.smtp.received.length = 0;
        const { opportunityId, contactId } = await dueOpportunity();
        const other = await insertOpportunity(world.database.db, { closing_date: '2026-12-10' });
        const otherClaim = (await claimSend(world.database.db, { ...keptRow(other, null), recipient: 'bob@customer.test' }))!;
        const { kept, keep } = keptJob(withKept(opportunityId, { claimId: otherClaim, row: keptRow(opportunityId, contactId), outcome }));
        const result = await deliver(await deps(mailer), kept.data, new Date(DUE), keep);
        // Deferred: sent again, once. Accepted: recorded, not sent again.
        expect(result, outcome.kind).toMatchObject({ sent: 1, unknown: 0 });
        expect(world.smtp.received, outcome.kind).toHaveLength(outcome.kind === 'deferred' ? 1 : 0);
        expect((await deliveries(world.database.db, other)).map((r) => [r.id, r.status]), outcome.kind).toEqual([[otherClaim, 'unknown']]);
        expect((await deliveries(world.database.db, opportunityId)).map((r) => r.status), outcome.kind).toEqual(['sent']);
        expect(kept.data.unrecorded).toBeUndefined();
      }
    } finally {
      await mailer.close();
    }
  });

  const OLD_SECRET = 'the-secret-before-the-rotation-0123';

  it.each([
    ['under this NUDGE_SECRET', SECRET],
    ['under a secret since rotated, listed in NUDGE_SECRET_PREVIOUS', OLD_SECRET],
  ])('kept though it was recorded after all (%s): the retry only takes it out of the job, counting nothing twice', async (_, secret) => {
    const { opportunityId } = await dueOpportunity();
    const mailer = smtpMailer(world.smtp.url);
    try {
      expect(await deliver(await deps(mailer), job(opportunityId), new Date(DUE))).toMatchObject({ sent: 1 });
      const [sent] = await deliveries(world.database.db);
      const { kept, keep } = keptJob(withKept(opportunityId, { claimId: sent!.id, row: keptRow(opportunityId, sent!.contact_id), outcome: { kind: 'accepted', response: '250 ok' } }, secret));
      const worker = await deps(mailer);
      worker.compose = { ...worker.compose, previousSecrets: ['another-old-secret-0123456789', OLD_SECRET] };
      expect(await deliver(worker, kept.data, new Date(DUE), keep)).toEqual({ sent: 0, suppressed: 0, failed: 0, unknown: 0, skipped: 0 });
      expect(kept.writes).toBe(1);
      expect(kept.data.unrecorded).toBeUndefined();
      expect((await deliveries(world.database.db)).map((r) => r.status)).toEqual(['sent']);
      expect(world.smtp.received).toHaveLength(1);
    } finally {
      await mailer.close();
    }
  });

  it('opened with a previous NUDGE_SECRET and kept again: sealed under the current one alone', async () => {
    const { opportunityId, contactId } = await dueOpportunity();
    const send: UnrecordedSend = { claimId: 7, row: keptRow(opportunityId, contactId), outcome: { kind: 'accepted', response: '250 ok' } };
    const saved: DeliverJob[] = [];
    const sends = new UnrecordedSends(withKept(opportunityId, send, OLD_SECRET), { secret: SECRET, previousSecrets: [OLD_SECRET] }, silentLogger, async (data) => { saved.push(data); });
    expect(sends.left.map((u) => u.claimId)).toEqual([7]);
    sends.hold({ ...send, outcome: { kind: 'unknown', reason: 'cut' } });
    await sends.written();
    expect(keptSends({ secret: SECRET }, saved[0]!).map((u) => u.outcome.kind)).toEqual(['unknown']);
    expect(() => keptSends({ secret: OLD_SECRET }, saved[0]!)).toThrow(SealError);
  });

  it('kept under another NUDGE_SECRET, or moved from another job: the job fails, naming the secret, and sends nothing', async () => {
    const { opportunityId, contactId } = await dueOpportunity();
    const other = await dueOpportunity();
    const send: UnrecordedSend = { claimId: 1_000_000, row: keptRow(opportunityId, contactId), outcome: { kind: 'accepted', response: '250 ok' } };
    const mailer = smtpMailer(world.smtp.url);
    try {
      for (const data of [withKept(opportunityId, send, 'another-secret-0123456789abcdef'), withKept(opportunityId, send, SECRET, job(other.opportunityId))]) {
        const { kept, keep } = keptJob(data);
        const error = await deliver(await deps(mailer), kept.data, new Date(DUE), keep).then(() => null, (e: Error) => e);
        expect(error).toBeInstanceOf(SealError);
        expect(error?.message).toMatch(/claim 1000000.*NUDGE_SECRET/);
        expect(kept.writes).toBe(0);
      }
      expect(await deliveries(world.database.db)).toEqual([]);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(world.smtp.received).toHaveLength(0);
    } finally {
      await mailer.close();
    }
  });

  it('is recorded by the BullMQ retry of the job, through the job data in Redis: one email, sent', async () => {
    const { opportunityId } = await dueOpportunity();
    await failClaimCommits(2, 'P0001');
    try {
      expect((await world.tick(DUE)).enqueued).toBe(1);
      expect(await world.drain('2026-12-07T08:00:30Z')).toMatchObject({ jobs: 1, sent: 0, retrying: 1 });
      await until('the message to arrive', () => world.smtp.received.length === 1, 10_000);
      expect(await deliveries(world.database.db)).toEqual([]);
      const [delayed] = await world.rt.queue.getDelayed();
      expect(opened(delayed!.data).map((u) => u.outcome.kind)).toEqual(['accepted']);
      // As Redis holds it: ids, and the rest sealed.
      const stored = await (await world.rt.queue.client).hget(world.rt.queue.toKey(delayed!.id!), 'data');
      expect(stored).toContain(`"opportunityId":${opportunityId}`);
      expect(stored).not.toMatch(/@customer\.test|Trip to the USA/);
      // The retry, without waiting out its backoff (a worker would take it once due; `drain` leaves
      // delayed jobs): the job as BullMQ kept it, data and all.
      await delayed!.promote();
      expect(await world.drain('2026-12-07T08:01:00Z')).toMatchObject({ jobs: 1, sent: 1, retrying: 0 });
      expect((await deliveries(world.database.db)).map((r) => [r.status, r.opportunity_id])).toEqual([['sent', opportunityId]]);
      expect(world.smtp.received).toHaveLength(1);
    } finally {
      await dropFailClaimCommits();
    }
  });
});

describe('a job whose attempts are spent while it holds a send it could not record', () => {
  it('is not dropped: it waits and tries again, without attempts, until the send is recorded; one email, sent', async () => {
    const { opportunityId } = await dueOpportunity();
    // Writing `sent` fails twice with an error no retry mends: the job's only attempt, then its
    // first extra try, give up with the message delivered and kept in the job.
    const sentUpdates = await failSentUpdates(2, 'P0001');
    const data = job(opportunityId);
    await world.rt.queue.add('deliver', data, { ...deliverJobOptions({ prefix: world.rt.config.queuePrefix, attempts: 1, retryBaseMs: world.rt.config.retryBaseMs }), jobId: deliverJobId(data) });
    const held: Error[] = [];
    const failed: Error[] = [];
    const mailer = smtpMailer(world.smtp.url);
    const worker = startDeliverWorker(world.rt, { clock: fixedClock(DUE), content: await world.rt.liveContent(), mailer, onHeld: (_job, err) => held.push(err) });
    worker.on('failed', (_job, err) => failed.push(err));
    try {
      await until('the send to be recorded', async () => (await deliveries(world.database.db)).some((r) => r.status === 'sent'), 20_000);
      expect(held.map((e) => e.message)).toEqual(['update refused for the test', 'update refused for the test']);
      expect(failed).toEqual([]);
      expect(await sentUpdates()).toBe(3);
      await until('the job to complete', async () => (await world.rt.queue.getJob(deliverJobId(data))) === undefined, 10_000);
      expect((await deliveries(world.database.db)).map((r) => [r.status, r.opportunity_id])).toEqual([['sent', opportunityId]]);
      expect(world.smtp.received).toHaveLength(1);
    } finally {
      await worker.close();
      await mailer.close();
      await dropFailSentUpdates();
    }
  });

  it('holding a send that does not open with this NUDGE_SECRET: kept, not dropped, and nothing is sent', async () => {
    const { opportunityId, contactId } = await dueOpportunity();
    const data = job(opportunityId);
    const row = { opportunity_id: opportunityId, step_id: data.stepId, contact_id: contactId, recipient: 'ada@customer.test', due_at: new Date(DUE),
      decided_at: new Date(DUE), closing_date: data.closingDate, occurrence: '', message_id: '<kept@acme.test>', template: 'reminder.hbs', transport: 'smtp' };
    const unrecorded = [keepSend('another-secret-0123456789abcdef', data, { claimId: 1_000_000, row, outcome: { kind: 'accepted', response: '250 ok' } })];
    await world.rt.queue.add('deliver', { ...data, unrecorded }, {
      ...deliverJobOptions({ prefix: world.rt.config.queuePrefix, attempts: 1, retryBaseMs: world.rt.config.retryBaseMs }), jobId: deliverJobId(data),
    });
    const held: Error[] = [];
    const mailer = smtpMailer(world.smtp.url);
    const worker = startDeliverWorker(world.rt, { clock: fixedClock(DUE), content: await world.rt.liveContent(), mailer, onHeld: (_job, err) => held.push(err) });
    try {
      await until('the job to be held', () => held.length > 0, 10_000);
      // Closed (a job it took meanwhile finished), the worker takes it no more: it stays delayed.
      await worker.close();
      expect(held[0]).toBeInstanceOf(SealError);
      const kept = await world.rt.queue.getJob(deliverJobId(data));
      expect([await kept?.getState(), kept?.attemptsMade, kept?.data.unrecorded]).toEqual(['delayed', 0, unrecorded]);
      expect(await deliveries(world.database.db)).toEqual([]);
      expect(world.smtp.received).toHaveLength(0);
    } finally {
      await worker.close();
      await mailer.close();
    }
  });
});

describe("the workers' PostgreSQL connections", () => {
  it("are kept through a quiet spell longer than pg's 10 s, the scan's too: the first sends after it pay no new connection", async () => {
    const pid = async (db: typeof world.rt.db) => (await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(db)).rows[0]!.pid;
    const before = [await pid(world.rt.db), await pid(world.rt.readDb)];
    await new Promise((resolve) => setTimeout(resolve, 11_000));
    const alive = await sql<{ n: string }>`select count(*) as n from pg_stat_activity where pid in (${before[0]}, ${before[1]})`.execute(world.database.db);
    expect(Number(alive.rows[0]!.n)).toBe(2);
    expect([await pid(world.rt.db), await pid(world.rt.readDb)]).toEqual(before);
  }, 30_000);
});

describe("a killed worker's jobs", () => {
  it('are looked for every 5 s at most, so they run again within the lock and 5 s, not twice the lock', async () => {
    expect(world.rt.config.jobLockMs).toBe(30_000);
    const mailer = smtpMailer(world.smtp.url);
    const worker = startDeliverWorker(world.rt, { clock: fixedClock(DUE), content: await world.rt.liveContent(), mailer, autorun: false });
    try {
      expect([worker.opts.lockDuration, worker.opts.stalledInterval, worker.opts.maxStalledCount]).toEqual([30_000, 5_000, 10]);
    } finally {
      await worker.close();
      await mailer.close();
    }
  });
});

describe('a claim lost with its COMMIT while another worker claimed the same send', () => {
  it("is not taken for this worker's own: the other claim is left as it is, and this send is logged as unrecorded", async () => {
    const { opportunityId, contactId } = await dueOpportunity();
    // The first claim's COMMIT fails (after the message's final dot went with it). Then, before
    // this worker records its claim again, another worker's claim of the same send appears: the
    // logger's line for that moment writes it, synchronously, through psql.
    await failClaimCommits(1);
    const { logger, lines } = keptLogger((entry) => {
      if (entry.msg !== 'the claim may not have committed while the message was completed; recording it again') return;
      execFileSync('psql', [world.database.url, '-qc', `insert into deliveries (opportunity_id, step_id, contact_id, recipient, status,
        decided_at, closing_date, occurrence, claimed_at, handed_at, detail) values (${opportunityId}, 'closing-in-3-days', ${contactId},
        'ada@customer.test', 'unknown', now(), '2026-12-10', '', now(), now(), 'the other worker')`]);
    });
    const mailer = smtpMailer(world.smtp.url);
    try {
      const error = await deliver({ ...(await deps(mailer)), logger }, job(opportunityId), new Date(DUE)).then(() => null, (e: Error) => e);
      expect(error?.message).toMatch(/commit refused for the test/);
      await until('the message to arrive', () => world.smtp.received.length === 1, 10_000);
      const rows = await deliveries(world.database.db);
      expect(rows.map((r) => [r.status, r.detail])).toEqual([['unknown', 'the other worker']]);
      expect(lines.map((l) => l.msg)).toContain("the step was spent by another worker while this send's claim was lost; the send is not recorded");
    } finally {
      await mailer.close();
      await dropFailClaimCommits();
    }
  });
});

describe("a send's claim", () => {
  it("commits durably where the server would not (synchronous_commit off): set for the claim's transaction only; a durable setting kept", async () => {
    for (const [server, claim] of [['off', 'on'], ['local', 'local'], ['remote_apply', 'remote_apply']] as const) {
      await world.reset();
      const { opportunityId, contactId } = await dueOpportunity();
      const { db } = createDb(world.database.url, { max: 1, options: `-c synchronous_commit=${server}` });
      try {
        const show = async (on: typeof db) => (await sql<{ synchronous_commit: string }>`show synchronous_commit`.execute(on)).rows[0]!.synchronous_commit;
        const settings = await db.connection().execute(async (conn) => {
          const before = await show(conn);
          const inside = await conn.transaction().execute(async (trx) => {
            await claimSend(trx, keptRow(opportunityId, contactId));
            return show(trx);
          });
          return [before, inside, await show(conn)];
        });
        // Off, the COMMIT would be acknowledged before it reached the disk: a crash then would lose
        // the claim of an email that went, and the next scan would send it again.
        expect(settings).toEqual([server, claim, server]);
        expect((await deliveries(world.database.db, opportunityId)).map((r) => r.status)).toEqual(['unknown']);
      } finally {
        await db.destroy();
      }
    }
  });

  it('meets an id another row holds: the transaction fails, nothing is sent, and the retry sends; never skipped as already spent', async () => {
    const { opportunityId } = await dueOpportunity();
    const other = await insertOpportunity(world.database.db, { closing_date: '2026-12-10' });
    const [taken] = await world.database.db.insertInto('deliveries').values({
      opportunity_id: other, step_id: 'closing-in-3-days', recipient: 'bob@customer.test', status: 'suppressed', reason: 'no_recipient', decided_at: new Date(DUE),
    }).returning('id').execute();
    // As a crash can leave it: the sequence's next value is an id a row holds.
    await sql`select setval(pg_get_serial_sequence('deliveries', 'id'), ${taken!.id}, false)`.execute(world.database.db);
    const mailer = smtpMailer(world.smtp.url);
    try {
      const error = await deliver(await deps(mailer), job(opportunityId), new Date(DUE)).then(() => null, (e: Error) => e);
      expect(error?.message).toMatch(/deliveries_pkey/);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(world.smtp.received).toHaveLength(0);
      expect(await deliver(await deps(mailer), job(opportunityId), new Date(DUE))).toMatchObject({ sent: 1, skipped: 0 });
      expect(world.smtp.received).toHaveLength(1);
    } finally {
      await mailer.close();
    }
  });
});

describe('a claim lost with its COMMIT, whose id PostgreSQL gives again after a crash', () => {
  // A sequence value drawn by a transaction that did not commit can be drawn again once
  // PostgreSQL has recovered from a crash (seen here on a server of the test's own, killed under
  // load: the id of a lost INSERT given to the first INSERT after the restart). The test plays
  // the two moments that follow, at the instant this worker goes to record its lost claim again.
  const LOST_CLAIM_LINE = 'the claim may not have committed while the message was completed; recording it again';
  const lostIdOf = (entry: Record<string, unknown>) => Number(/claim (\d+)/.exec(String(entry.err))?.[1]);

  it("given to another send's claim: that claim is left as it is, and this send is recorded under an id of its own", async () => {
    const { opportunityId } = await dueOpportunity();
    const other = await insertOpportunity(world.database.db, { closing_date: '2026-12-10' });
    let lostId = 0;
    await failClaimCommits(1);
    const { logger } = keptLogger((entry) => {
      if (entry.msg !== LOST_CLAIM_LINE) return;
      lostId = lostIdOf(entry);
      execFileSync('psql', [world.database.url, '-qc', `insert into deliveries (id, opportunity_id, step_id, recipient, status,
        decided_at, closing_date, occurrence, claimed_at, handed_at, detail) values (${lostId}, ${other}, 'closing-in-3-days',
        'bob@customer.test', 'unknown', now(), '2026-12-10', '', now(), now(), 'another send')`]);
    });
    const mailer = smtpMailer(world.smtp.url);
    try {
      const error = await deliver({ ...(await deps(mailer)), logger }, job(opportunityId), new Date(DUE)).then(() => null, (e: Error) => e);
      expect(error?.message).toMatch(/commit refused for the test/);
      await until('the message to arrive', () => world.smtp.received.length === 1, 10_000);
      expect(lostId).toBeGreaterThan(0);
      // Taken for this send's own, the other claim would be marked sent (its message may never
      // go), and this send would have no row: the next scan would send it again.
      expect((await deliveries(world.database.db, other)).map((r) => [r.id, r.status, r.detail])).toEqual([[lostId, 'unknown', 'another send']]);
      const mine = await deliveries(world.database.db, opportunityId);
      expect(mine.map((r) => r.status)).toEqual(['sent']);
      expect(mine[0]!.id).not.toBe(lostId);
      expect(await deliver(await deps(mailer), job(opportunityId), new Date(DUE))).toMatchObject({ sent: 0, skipped: 1 });
      expect(world.smtp.received).toHaveLength(1);
    } finally {
      await mailer.close();
      await dropFailClaimCommits();
    }
  });

  it('committed after all, late (after this worker first looked for it): found, and recorded as sent, not taken for another worker\'s', async () => {
    const { opportunityId } = await dueOpportunity();
    await failClaimCommits(1);
    // The lost COMMIT comes through while the claim is being written again: as the new INSERT
    // starts, the first claim's row appears, decided at the same instant.
    await sql.raw(`create sequence late_claims;
      create function late_claim() returns trigger language plpgsql as $$
      begin
        if pg_trigger_depth() = 1 and new.status = 'unknown' and nextval('late_claims') = 2 then
          insert into deliveries (opportunity_id, step_id, contact_id, recipient, status, decided_at, closing_date, occurrence, claimed_at, handed_at)
          values (new.opportunity_id, new.step_id, new.contact_id, new.recipient, 'unknown', new.decided_at, new.closing_date, new.occurrence, now(), now());
        end if;
        return new;
      end $$;
      create trigger late_claim before insert on deliveries for each row execute function late_claim()`).execute(world.database.db);
    const mailer = smtpMailer(world.smtp.url);
    try {
      const { logger, lines } = keptLogger();
      await deliver({ ...(await deps(mailer)), logger }, job(opportunityId), new Date(DUE)).catch(() => {});
      await until('the message to arrive', () => world.smtp.received.length === 1, 10_000);
      expect((await deliveries(world.database.db)).map((r) => r.status)).toEqual(['sent']);
      expect(lines.map((l) => l.msg)).not.toContain("the step was spent by another worker while this send's claim was lost; the send is not recorded");
    } finally {
      await mailer.close();
      await dropFailClaimCommits();
      await sql.raw('drop trigger late_claim on deliveries; drop function late_claim(); drop sequence late_claims').execute(world.database.db);
    }
  });

  it('about to be given again (the sequence went back below it): the claim written again does not take it from the next send', async () => {
    const { opportunityId } = await dueOpportunity();
    await failClaimCommits(1);
    const { logger } = keptLogger((entry) => {
      if (entry.msg !== LOST_CLAIM_LINE) return;
      // As recovery leaves it: the next value drawn is the lost claim's id.
      execFileSync('psql', [world.database.url, '-qc', `select setval(pg_get_serial_sequence('deliveries', 'id'), ${lostIdOf(entry)}, false)`]);
    });
    const mailer = smtpMailer(world.smtp.url);
    try {
      await deliver({ ...(await deps(mailer)), logger }, job(opportunityId), new Date(DUE)).catch(() => {});
      await until('the message to arrive', () => world.smtp.received.length === 1, 10_000);
      expect((await deliveries(world.database.db)).map((r) => r.status)).toEqual(['sent']);
      await dropFailClaimCommits();
      // The next send draws the next id: written again under the lost id itself, the claim would
      // hold the id the sequence gives next, and this send's claim would find it taken.
      const bob = await insertContact(world.database.db, { email: 'bob@customer.test', first_name: 'Bob', time_zone: 'Europe/Brussels' });
      const next = await insertOpportunity(world.database.db, { closing_date: '2026-12-10', primary_contact_id: bob });
      expect(await deliver(await deps(mailer), job(next), new Date(DUE))).toMatchObject({ sent: 1, skipped: 0 });
      expect((await deliveries(world.database.db)).map((r) => [r.opportunity_id, r.status])).toEqual([[opportunityId, 'sent'], [next, 'sent']]);
      expect(world.smtp.received).toHaveLength(2);
    } finally {
      await mailer.close();
      await sql`drop trigger if exists fail_first_claim on deliveries`.execute(world.database.db);
      await sql`drop function if exists fail_first_claim(); drop sequence if exists fail_once`.execute(world.database.db);
    }
  });
});

describe('the outcome of a send, while PostgreSQL refuses to record it', () => {
  /** deliver, with a logger that keeps its lines. */
  async function deliverLogged(mailer: Mailer, opportunityId: number) {
    const { logger, lines } = keptLogger();
    const outcome = await deliver({ ...(await deps(mailer)), logger }, job(opportunityId), new Date(DUE)).then((r) => r, (e: Error) => e);
    return { outcome, lines };
  }

  it('a failure that may pass (a serialization failure here, a cut connection in life) is tried again: sent, once', async () => {
    const { opportunityId } = await dueOpportunity();
    const seen = await failSentUpdates(2, '40001');
    const mailer = smtpMailer(world.smtp.url);
    try {
      const { outcome, lines } = await deliverLogged(mailer, opportunityId);
      expect(outcome).toMatchObject({ sent: 1 });
      expect(await seen()).toBe(3);
      expect((await deliveries(world.database.db)).map((r) => r.status)).toEqual(['sent']);
      expect(world.smtp.received).toHaveLength(1);
      const retries = lines.filter((l) => l.msg === 'could not record the send yet (PostgreSQL unreachable or refusing for now); trying again');
      expect(retries.map((l) => [l.opportunityId, l.attempt])).toEqual([[opportunityId, 1], [opportunityId, 2]]);
      expect(JSON.stringify(lines)).not.toMatch(/ada@customer\.test|Trip to the USA/);
    } finally {
      await mailer.close();
      await dropFailSentUpdates();
    }
  });

  it('an error no retry can mend is not tried again: the send stays unknown, never resent', async () => {
    const { opportunityId } = await dueOpportunity();
    const seen = await failSentUpdates(1_000, 'P0001');
    const mailer = smtpMailer(world.smtp.url);
    try {
      const { outcome, lines } = await deliverLogged(mailer, opportunityId);
      expect((outcome as Error).message).toMatch(/update refused for the test/);
      expect(await seen()).toBe(1);
      expect(lines.map((l) => l.msg)).toContain('could not record how SMTP answered (accepted); it is kept in the job, whose retry records it');
      expect((await deliveries(world.database.db)).map((r) => r.status)).toEqual(['unknown']);
      // The job's retry finds the step spent.
      expect(await deliver(await deps(mailer), job(opportunityId), new Date(DUE))).toMatchObject({ sent: 0, skipped: 1 });
      expect(world.smtp.received).toHaveLength(1);
    } finally {
      await mailer.close();
      await dropFailSentUpdates();
    }
  });
});

describe('exactly once', () => {
  it('one email when the same send is enqueued twice under different job ids and three workers drain at once', async () => {
    const { opportunityId } = await dueOpportunity();
    const data = { opportunityId, stepId: 'closing-in-3-days', closingDate: '2026-12-10', occurrence: '' };
    for (let i = 0; i < 6; i++) await world.rt.queue.add('deliver', data, { jobId: `duplicate-${i}` });
    const results = await Promise.all([world.drain(DUE), world.drain(DUE), world.drain(DUE)]);
    expect(results.reduce((n, r) => n + r.sent, 0)).toBe(1);
    expect(world.smtp.received).toHaveLength(1);
    const rows = await deliveries(world.database.db);
    expect(rows.map((r) => r.status)).toEqual(['sent']);
  });

  it('the database refuses a second spending row whatever the queue does', async () => {
    const { opportunityId } = await dueOpportunity();
    const row = {
      opportunity_id: opportunityId, step_id: 's', recipient: 'ada@customer.test', status: 'sent' as const,
      decided_at: new Date(), occurrence: '',
    };
    await world.database.db.insertInto('deliveries').values(row).execute();
    await expect(world.database.db.insertInto('deliveries').values(row).execute()).rejects.toThrow(/deliveries_spent/);
    await expect(world.database.db.insertInto('deliveries').values({ ...row, status: 'unknown' }).execute()).rejects.toThrow(/deliveries_spent/);
  });
});

describe('SMTP failures', () => {
  withSlowRetries();

  it('a permanent 550 becomes failed with the server text, once, and is not retried', async () => {
    await dueOpportunity();
    world.smtp.refuse({ code: 550, message: 'mailbox ada unavailable' });
    await world.tick(DUE);
    const totals = await world.drain(DUE);
    expect(totals).toMatchObject({ failed: 1, sent: 0, retrying: 0 });
    world.smtp.refuse(null);
    expect((await world.tick('2026-12-07T08:05:00Z')).enqueued).toBe(0);
    await world.drain('2026-12-07T08:05:00Z');
    const rows = await deliveries(world.database.db);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ status: 'failed', reason: 'smtp_rejected' });
    expect(rows[0]!.detail).toContain('mailbox ada unavailable');
    expect(world.smtp.received).toHaveLength(0);
  });

  it('a transient 421 is retried with backoff and sent once the server recovers', async () => {
    await dueOpportunity();
    world.smtp.refuse({ code: 421, message: 'try again later' });
    await world.tick(DUE);
    const first = await world.drain(DUE);
    expect(first).toMatchObject({ sent: 0, retrying: 1 });
    expect(await deliveries(world.database.db)).toHaveLength(0);
    world.smtp.refuse(null);
    // The retry waits in BullMQ's delayed set; made ready, a later drain takes it.
    await promoteRetry();
    const second = await world.drain(DUE);
    expect(second.sent).toBe(1);
    expect(world.smtp.received).toHaveLength(1);
    expect((await deliveries(world.database.db)).map((r) => r.status)).toEqual(['sent']);
  });

  it('a 5xx to the sender (a configuration the operator must fix) spends nothing: retried, and sent once it is fixed', async () => {
    await dueOpportunity();
    world.smtp.refuseSender({ code: 550, message: '5.7.1 Sender address rejected: not owned by user' });
    const tried = () => world.smtp.rcptAttempts.get('ada@customer.test') ?? 0;
    const before = tried();
    await world.tick(DUE);
    // Recorded as failed, the step would be spent for good, as it would be for every customer.
    expect(await world.drain(DUE)).toMatchObject({ sent: 0, failed: 0, retrying: 1 });
    expect(await deliveries(world.database.db)).toEqual([]);
    expect(tried()).toBe(before);
    world.smtp.refuseSender(null);
    await promoteRetry();
    expect(await world.drain(DUE)).toMatchObject({ sent: 1 });
    expect(world.smtp.received.map((m) => m.envelopeTo)).toEqual([['ada@customer.test']]);
    expect((await deliveries(world.database.db)).map((r) => r.status)).toEqual(['sent']);
  });
});

describe('a template that cannot render', () => {
  it('is logged on every try, also when an earlier try recorded it', async () => {
    const { opportunityId } = await dueOpportunity();
    await sql`update opportunities set currency = '€€€' where id = ${opportunityId}`.execute(world.database.db);
    const mailer = smtpMailer(world.smtp.url);
    try {
      const { logger, lines } = keptLogger();
      const failedLines = () => lines.filter((l) => l.msg === 'failed').map((l) => [l.opportunityId, l.reason]);
      expect(await deliver({ ...(await deps(mailer)), logger }, job(opportunityId), new Date(DUE))).toMatchObject({ failed: 1 });
      expect(failedLines()).toEqual([[opportunityId, 'template_error']]);
      // The row is there already; the template is still broken, and the operator hears it again.
      await deliver({ ...(await deps(mailer)), logger }, job(opportunityId), new Date(DUE));
      expect(failedLines()).toEqual([[opportunityId, 'template_error'], [opportunityId, 'template_error']]);
      expect(await deliveries(world.database.db)).toHaveLength(1);
      expect(world.smtp.received).toHaveLength(0);
    } finally {
      await mailer.close();
    }
  });

  it('is recorded as failed without spending the step; once fixed, the step fires in its window', async () => {
    const { opportunityId } = await dueOpportunity();
    // The CRM wrote a currency Intl cannot format: formatMoney throws for this row only.
    await sql`update opportunities set currency = '€€€' where id = ${opportunityId}`.execute(world.database.db);
    await world.tick(DUE);
    const worker = await world.drain(DUE);
    expect(worker.failed).toBe(1);
    const rows = await deliveries(world.database.db);
    expect(rows.map((r) => [r.status, r.reason])).toEqual([['failed', 'template_error']]);
    expect(rows[0]!.detail).toMatch(/reminder\.hbs/);
    // A second pass over the same failure adds no second row.
    await world.tick('2026-12-07T08:30:00Z');
    await world.drain('2026-12-07T08:30:00Z');
    expect(await deliveries(world.database.db)).toHaveLength(1);
    await sql`update opportunities set currency = 'EUR' where id = ${opportunityId}`.execute(world.database.db);
    expect((await world.tick('2026-12-07T09:00:00Z')).enqueued).toBe(1);
    await world.drain('2026-12-07T09:00:00Z');
    expect(world.smtp.received).toHaveLength(1);
    expect((await deliveries(world.database.db)).map((r) => r.status)).toEqual(['failed', 'sent']);
  });
});
