/**
 * `nudge send-test` as a marketer runs it: a separate process against the world's PostgreSQL and
 * SMTP sink. What arrived (subject, headers, content), what it printed, its exit code, and that
 * `deliveries` stayed empty.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runNudge } from './helpers/cli.ts';
import { deliveries, insertContact, insertOpportunity } from './helpers/fixtures.ts';
import { createWorld, type World } from './helpers/world.ts';
import type { ReceivedEmail } from './helpers/smtp-sink.ts';

let world: World;
let cwd: string;

beforeAll(async () => {
  world = await createWorld();
  cwd = mkdtempSync(path.join(os.tmpdir(), 'nudge-cwd-'));
});

afterAll(async () => {
  await world?.close();
  rmSync(cwd, { recursive: true, force: true });
});

beforeEach(() => {
  world.smtp.received.length = 0;
  world.smtp.refuse(null);
  world.smtp.refuseSender(null);
});

const nudge = (args: string[], env: Record<string, string | undefined> = {}) => runNudge(['send-test', ...args], { ...world.env, ...env }, cwd);

/** The raw header block, folded lines unfolded. */
function headers(mail: ReceivedEmail): string {
  return mail.raw.split('\r\n\r\n')[0]!.replace(/\r\n[ \t]+/g, ' ');
}

async function expectNoDeliveries(): Promise<void> {
  expect(await deliveries(world.database.db)).toEqual([]);
}

describe('with the sample opportunity', () => {
  it('sends one email marked as a test, with the headers of a journey email, and records nothing', async () => {
    const r = await nudge(['closing-soon', '--to', 'Tester@Agency.test']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^sent a test of closing-soon \(closing-soon\.hbs, locale en, Europe\/Brussels\) to tester@agency\.test via smtp: 250 /m);
    expect(r.stdout).toContain('nothing was recorded in deliveries');
    expect(world.smtp.received).toHaveLength(1);
    const mail = world.smtp.received[0]!;
    expect(mail.envelopeTo).toEqual(['tester@agency.test']);
    expect(mail.parsed.subject).toBe('[TEST] Your request “Trip to the USA”: let’s make sure everything is ready');
    expect(mail.parsed.from?.value).toEqual([{ name: 'Acme Travel', address: 'sales@acme.test' }]);
    expect(mail.parsed.headers.get('x-nudge-step')).toBe('closing-in-14-days');
    expect(mail.parsed.headers.get('x-nudge-opportunity')).toBe('0');
    expect(mail.parsed.headers.get('x-nudge-test')).toBe('yes');
    expect(mail.parsed.messageId).toMatch(/^<[0-9a-f]{32}\.0@acme\.test>$/);
    expect(headers(mail)).toMatch(/^List-Unsubscribe: <https:\/\/nudge\.acme\.test\/unsubscribe\/c0\.[A-Za-z0-9_-]{43}>$/m);
    expect(headers(mail)).toMatch(/^List-Unsubscribe-Post: List-Unsubscribe=One-Click$/m);
    expect(mail.parsed.html).toContain('€12,000');
    expect(mail.parsed.html).toContain('Hello Alex,');
    expect(mail.parsed.text).toContain('Thank you again for your request “Trip to the USA”.');
    await expectNoDeliveries();
  });

  it('gives each test its own Message-ID, so a mail program shows the second one too', async () => {
    expect((await nudge(['last-call', '--to', 'tester@agency.test'])).code).toBe(0);
    expect((await nudge(['last-call', '--to', 'tester@agency.test'])).code).toBe(0);
    const ids = world.smtp.received.map((m) => m.parsed.messageId);
    expect(ids).toHaveLength(2);
    expect(ids[0]).not.toBe(ids[1]);
  });

  it('--locale picks the variant and the formats', async () => {
    const r = await nudge(['proposal-follow-up', '--to', 'tester@agency.test', '--locale', 'de']);
    expect(r.code).toBe(0);
    const mail = world.smtp.received[0]!;
    expect(mail.parsed.subject).toBe('[TEST] Ihre Anfrage „Trip to the USA“: Beantwortet unser Angebot Ihre Fragen?');
    expect(mail.parsed.html).toContain('12.000\u00a0€');
    expect(mail.parsed.html).toContain('lang="de"');
  });

  it('an owner email goes without List-Unsubscribe, as a journey would send it', async () => {
    const r = await nudge(['owner-update-closing-date', '--to', 'tester@agency.test']);
    expect(r.code).toBe(0);
    const mail = world.smtp.received[0]!;
    expect(mail.parsed.subject).toBe('[TEST] Please update the closing date of “Trip to the USA”');
    expect(mail.parsed.headers.get('x-nudge-step')).toBe('update-closing-date');
    expect(headers(mail)).not.toMatch(/^List-Unsubscribe/m);
    await expectNoDeliveries();
  });
});

describe('with a real opportunity', () => {
  it('renders its data and its primary contact, in the contact\'s locale and zone, and records nothing', async () => {
    const contact = await insertContact(world.database.db, { email: 'lea@customer.test', first_name: 'Lea', last_name: 'Huber', locale: 'de', time_zone: 'Europe/Vienna' });
    const id = await insertOpportunity(world.database.db, {
      title: 'Sprachkurs in Australien', amount: '4500.00', closing_date: '2026-12-17', stage: 'proposal', primary_contact_id: contact,
    });
    const r = await nudge(['closing-soon', '--to', 'tester@agency.test', '--opportunity', String(id)]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('(closing-soon.de.hbs, locale de, Europe/Vienna) to tester@agency.test');
    const mail = world.smtp.received[0]!;
    expect(mail.envelopeTo).toEqual(['tester@agency.test']);
    expect(mail.parsed.subject).toBe('[TEST] Ihre Anfrage „Sprachkurs in Australien“: Haben Sie alles für Ihre Entscheidung?');
    expect(mail.parsed.headers.get('x-nudge-opportunity')).toBe(String(id));
    expect(mail.parsed.html).toContain('Guten Tag Lea Huber,');
    expect(mail.parsed.html).toContain('4.500\u00a0€');
    expect(mail.parsed.html).toContain('17. Dezember 2026');
    // The links are signed for no contact: clicking "unsubscribe" in a test changes nobody's consent.
    expect(headers(mail)).toMatch(/^List-Unsubscribe: <https:\/\/nudge\.acme\.test\/unsubscribe\/c0\.[A-Za-z0-9_-]{43}>$/m);
    expect(mail.parsed.html).not.toContain(`/unsubscribe/c${contact}.`);
    await expectNoDeliveries();
  });

  it('without a primary contact, the sample contact fills the email, with a note', async () => {
    const id = await insertOpportunity(world.database.db, { title: 'Ski week', closing_date: '2026-12-20', stage: 'proposal' });
    const r = await nudge(['closing-soon', '--to', 'tester@agency.test', '--opportunity', String(id)]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe(`note: opportunity ${id} has no primary contact: the sample contact fills the email\n`);
    expect(world.smtp.received[0]!.parsed.subject).toBe('[TEST] Your request “Ski week”: let’s make sure everything is ready');
  });
});

describe('refusals', () => {
  it.each([
    [['closing-soon', '--to', 'not-an-address'], /^nudge: --to: "not-an-address" is not a valid email address$/m],
    [['closing-soon', '--to', 'a@b.test', '--opportunity', 'x1'], /^nudge: --opportunity must be a whole number, got "x1"$/m],
    [['closing-soon', '--to', 'a@b.test', '--opportunity', '9223372036854775808'], /^nudge: --opportunity must be at most 9223372036854775807, got "9223372036854775808"$/m],
    [['closing-soon', '--to', 'a@b.test', '--opportunity', '9007199254740993'], /^nudge: opportunity 9007199254740993 does not exist$/m],
    [['closing-soon', '--to', 'a@b.test', '--opportunity', '999999'], /^nudge: opportunity 999999 does not exist$/m],
    [['closing-son', '--to', 'a@b.test'], /^nudge: template "closing-son" not found in .+ \(available: closing-soon, last-call, owner-update-closing-date, proposal-follow-up\)$/m],
    [['closing-soon', '--to', 'a@b.test', '--locale', 'not a locale'], /^nudge: --locale: "not a locale" is not a locale such as de or en-GB$/m],
  ])('%j exits 1 with a clear message and sends nothing', async (args, message) => {
    const r = await nudge(args);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(message);
    expect(world.smtp.received).toHaveLength(0);
  });

  it('exits 3 with the server\'s text when SMTP refuses, and records nothing', async () => {
    world.smtp.refuse({ code: 550, message: 'mailbox tester@agency.test unavailable' });
    const r = await nudge(['closing-soon', '--to', 'tester@agency.test']);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^nudge: the SMTP server refused the test email to tester@agency\.test: 550 mailbox tester@agency\.test unavailable$/m);
    expect(world.smtp.received).toHaveLength(0);
    await expectNoDeliveries();
  });

  it.each([
    [{ code: 451, message: 'greylisted, try again later' }, /^nudge: the test email to tester@agency\.test was not sent: 451 greylisted, try again later$/m],
    [null, /^nudge: the test email to tester@agency\.test was not sent: ESOCKET: connect ECONNREFUSED 127\.0\.0\.1:1$/m],
  ])('exits 3 when the send does not go through (%j)', async (rule, message) => {
    world.smtp.refuse(rule);
    const r = await nudge(['closing-soon', '--to', 'tester@agency.test'], rule ? {} : { SMTP_URL: 'smtp://127.0.0.1:1' });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(message);
    expect(world.smtp.received).toHaveLength(0);
  });

  it('exits 3 naming the command and what to check when SMTP refuses Nudge itself (its sender)', async () => {
    world.smtp.refuseSender({ code: 553, message: '5.7.1 Sender address rejected: not owned by user' });
    const r = await nudge(['closing-soon', '--to', 'tester@agency.test']);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^nudge: the SMTP server refused Nudge itself at MAIL FROM, not this email: check SMTP_URL \(login\) and MAIL_FROM \(sender\): 553 5\.7\.1 Sender address rejected: not owned by user$/m);
    expect(world.smtp.received).toHaveLength(0);
    await expectNoDeliveries();
  });

  it('a template that cannot render exits 1 with file:line, nothing sent', async () => {
    world.write('broken.hbs', '---\nsubject: "About {{reference}}"\n---\n<p>{{formatMoney opportunity.title opportunity.currency}}</p>\n');
    const r = await nudge(['broken', '--to', 'tester@agency.test']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('nudge: the template cannot be rendered, nothing was sent:\nbroken.hbs:4:4: formatMoney: the amount "Trip to the USA" is not a decimal number\n');
    expect(world.smtp.received).toHaveLength(0);
  });
});

describe('warnings', () => {
  it('an http PUBLIC_URL and what templates check would say are printed; the test is still sent', async () => {
    world.write('draft.hbs', '---\nsubject: "A special offer"\n---\n<p><a href="http://acme.test/offer">Our offer</a> <img src="https://acme.test/x.png"></p>\n');
    const r = await nudge(['draft', '--to', 'tester@agency.test'], { PUBLIC_URL: 'http://nudge.acme.test' });
    expect(r.code).toBe(0);
    expect(r.stderr.split('\n')).toEqual([
      'note: `nudge templates check` reports for draft:',
      "draft.hbs:2:11: the subject of a customer email does not name the request (fix: put {{reference}}, the customer's own title for the request, in the subject)",
      'draft.hbs:4:7: link "http://acme.test/offer" is not https (fix: write https://acme.test/offer)',
      'draft.hbs:4:51: warning: <img> without alt text: many mail programs block images, and screen readers read alt (fix: add alt="what the image shows" (alt="" for a decorative image))',
      'warning: PUBLIC_URL is http://nudge.acme.test: List-Unsubscribe and the unsubscribe link are not https, which mail programs require for one-click unsubscribe (fix: set PUBLIC_URL to the https:// address customers reach Nudge at)',
      '',
    ]);
    const mail = world.smtp.received[0]!;
    expect(mail.parsed.subject).toBe('[TEST] A special offer');
    expect(mail.parsed.headers.get('x-nudge-step')).toBe('send-test');
    expect(headers(mail)).toMatch(/^List-Unsubscribe: <http:\/\/nudge\.acme\.test\/unsubscribe\/c0\./m);
    await expectNoDeliveries();
  });
});
