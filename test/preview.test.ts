/**
 * `nudge preview` as a marketer meets it: the real command in its own process, the page in a real
 * Chromium, the demo pipeline in a real PostgreSQL, and template files edited on disk while the
 * page is open.
 */
import type { ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedDemo } from '../src/seed.ts';
import { launchBrowser } from './helpers/browser.ts';
import { spawnNudge } from './helpers/cli.ts';
import { insertContact, insertOpportunity } from './helpers/fixtures.ts';
import { createWorld, REPO, type World } from './helpers/world.ts';

const HOSTILE = '<img src=x onerror=alert(1)>';
/** How long the page may take to show a render after a click, a pick or a saved file (expect.poll's own default is 1 s). */
const PAGE_UPDATE = { timeout: 15_000 };

interface Preview {
  child: ChildProcess;
  url: string;
  output(): string;
  stop(): Promise<void>;
}

/** Spawns `nudge preview --port 0` and reads the address from its one line of stdout. */
function startPreview(env: Record<string, string | undefined>): Promise<Preview> {
  const child = spawnNudge(['preview', '--port', '0'], { ...env, LOG_LEVEL: 'info' });
  let stdout = '';
  let stderr = '';
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`preview did not start: ${stderr}`));
    }, 50_000);
    child.stderr!.on('data', (d) => { stderr += d; });
    child.stdout!.on('data', (d) => {
      stdout += d;
      const url = /nudge preview: (http:\/\/\S+)/.exec(stdout)?.[1];
      if (url) {
        clearTimeout(timer);
        resolve({ child, url, output: () => stdout + stderr, stop });
      }
    });
    child.on('exit', (code) => reject(new Error(`preview exited with ${code}: ${stderr}`)));
  });
}

function getWithHost(url: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http.get(url, { headers: { host } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on('error', reject);
  });
}

let world: World;
let preview: Preview;
/** The same templates, without DATABASE_URL. */
let alone: Preview;
let browser: Browser;
let page: Page;
let shots: string;
const dialogs: string[] = [];
let template: string;

beforeAll(async () => {
  world = await createWorld();
  await seedDemo(world.database.db, new Date());
  const contact = await insertContact(world.database.db, { email: 'hostile@customer.test', locale: 'en' });
  await insertOpportunity(world.database.db, { title: HOSTILE, stage: 'proposal', primary_contact_id: contact, closing_date: '2030-01-10' });
  shots = mkdtempSync(path.join(os.tmpdir(), 'nudge-preview-shots-'));
  template = readFileSync(path.join(world.templatesDir, 'closing-soon.hbs'), 'utf8');
  // Side by side, and all settled before going on, so afterAll stops whatever did start.
  const started = await Promise.allSettled([
    startPreview(world.env).then((p) => { preview = p; }),
    startPreview({ ...world.env, DATABASE_URL: undefined }).then((p) => { alone = p; }),
    launchBrowser().then((b) => { browser = b; }),
  ]);
  for (const s of started) if (s.status === 'rejected') throw s.reason;
  page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  // A broken page fails in seconds, not at the 60-second test timeout.
  page.setDefaultTimeout(10_000);
  page.on('dialog', (dialog) => {
    dialogs.push(dialog.message());
    void dialog.dismiss();
  });
});

afterAll(async () => {
  await browser?.close();
  await preview?.stop();
  await alone?.stop();
  await world?.close();
  if (shots) rmSync(shots, { recursive: true, force: true });
});

const subject = () => page.locator('#subject');

describe('nudge preview in a browser', () => {
  it('listens on 127.0.0.1 and lists the steps of journeys.yaml and every template', async () => {
    expect(preview.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    await page.goto(preview.url);
    await expect.poll(() => page.locator('#steps li').allInnerTexts()).toHaveLength(5);
    const steps = await page.locator('#steps li').evaluateAll((els) => els.map((e) => e.getAttribute('data-step')));
    expect(steps).toEqual(['closing-in-14-days', 'closing-in-7-days', 'closing-in-3-days', 'proposal-follow-up', 'update-closing-date']);
    const templates = await page.locator('#templates li').evaluateAll((els) => els.map((e) => e.getAttribute('data-template')));
    expect(templates).toEqual(['closing-soon', 'last-call', 'owner-update-closing-date', 'proposal-follow-up']);
    expect(await page.locator('#problems-none').count()).toBe(1);
  });

  it('renders "Trip to the USA" at desktop and phone widths, with its text and real headers', async () => {
    await page.fill('#search input[name=q]', 'trip to the');
    await page.click('#search button[type=submit]');
    await page.click('#choices a:has-text("Trip to the USA")');
    await page.click('#steps a:text-is("closing-in-14-days")');
    await expect.poll(() => subject().innerText(), PAGE_UPDATE).toContain('Trip to the USA');
    expect(await page.locator('#current-opportunity').innerText()).toContain('Trip to the USA');

    const desktop = await page.locator('iframe#desktop').boundingBox();
    const phone = await page.locator('iframe#phone').boundingBox();
    expect(desktop!.width).toBeGreaterThanOrEqual(800);
    expect(desktop!.width).toBeLessThanOrEqual(804);
    expect(phone!.width).toBeGreaterThanOrEqual(375);
    expect(phone!.width).toBeLessThanOrEqual(379);
    // Side by side: the phone to the right of the desktop, at the same height.
    expect(phone!.x).toBeGreaterThan(desktop!.x + desktop!.width);
    expect(phone!.y).toBe(desktop!.y);
    // On a laptop's screen, too narrow for both, the phone goes under the desktop rather than
    // being cut off at the right (it had to be scrolled to).
    await page.setViewportSize({ width: 1366, height: 1000 });
    const under = await page.locator('iframe#phone').boundingBox();
    expect(under!.y).toBeGreaterThan(desktop!.y + desktop!.height);
    expect(under!.x + under!.width).toBeLessThanOrEqual(1366);
    await page.setViewportSize({ width: 1600, height: 1000 });
    for (const id of ['desktop', 'phone']) {
      expect(await page.locator(`iframe#${id}`).getAttribute('sandbox')).toBe('');
      expect(await page.frameLocator(`iframe#${id}`).locator('body').innerText()).toContain('Trip to the USA');
    }

    expect(await page.locator('#text').innerText()).toMatch(/Hello Alice,[\s\S]*Trip to the USA/);
    const headers = await page.locator('#headers').innerText();
    expect(headers).toMatch(/X-Nudge-Step\s+closing-in-14-days/);
    expect(headers).toMatch(/X-Nudge-Opportunity\s+\d+/);
    expect(headers).toMatch(/List-Unsubscribe\s+<https:\/\/nudge\.acme\.test\/unsubscribe\/[^>]+>/);
    expect(headers).toMatch(/List-Unsubscribe-Post\s+List-Unsubscribe=One-Click/);

    for (const id of ['desktop', 'phone']) {
      const file = path.join(shots, `${id}.png`);
      await page.locator(`iframe#${id}`).screenshot({ path: file });
      expect(statSync(file).size).toBeGreaterThan(1000);
      expect(readFileSync(file).subarray(1, 4).toString()).toBe('PNG');
    }
  });

  it('renders in another locale when one is picked', async () => {
    // Picking one submits the form: a new page, which selectOption does not wait for.
    await page.selectOption('#locale-form select', 'de');
    await expect.poll(() => subject().innerText(), PAGE_UPDATE).toContain('Ihre Anfrage „Trip to the USA“');
    expect(await page.locator('#template-file').innerText()).toBe('closing-soon.de.hbs');
    await page.selectOption('#locale-form select', '');
    await expect.poll(() => page.locator('#template-file').innerText(), PAGE_UPDATE).toBe('closing-soon.hbs');
  });

  it('updates itself when the template is saved, without a reload', async () => {
    await page.evaluate('window.notReloaded = true');
    world.write('closing-soon.hbs', template.replace(/^subject: .*$/m, 'subject: "Saved just now: {{reference}}"'));
    await page.locator('#subject:has-text("Saved just now: Trip to the USA")').waitFor(PAGE_UPDATE);
    expect(await page.evaluate('window.notReloaded')).toBe(true);
  });

  it('shows a broken template inline with file and line, keeps serving, and recovers when fixed', async () => {
    world.write('closing-soon.hbs', template.replace('<p style="margin:0;">Kind regards', '{{#if contact.firstName}}<p style="margin:0;">Kind regards'));
    await page.locator('#render-error').waitFor(PAGE_UPDATE);
    expect(await page.locator('#render-error').innerText()).toMatch(/closing-soon\.hbs:\d+(:\d+)?: syntax error/);
    expect(await page.locator('#problems').innerText()).toMatch(/closing-soon\.hbs:\d+(:\d+)?: syntax error/);
    expect(await page.locator('#steps li').count()).toBe(5);
    expect((await fetch(preview.url)).status).toBe(200);
    expect(preview.child.exitCode).toBeNull();

    world.write('closing-soon.hbs', template.replace(/^subject: .*$/m, 'subject: "Fixed: {{reference}}"'));
    await page.locator('#subject:has-text("Fixed: Trip to the USA")').waitFor(PAGE_UPDATE);
    expect(await page.locator('#render-error').count()).toBe(0);
    expect(await page.locator('#problems').count()).toBe(0);
  });

  // The page said every template was valid while templates check warned.
  it('shows what templates check warns of, beside a valid journey', async () => {
    expect(await page.locator('#warnings').count()).toBe(0);
    world.write('closing-soon.hbs', template.replace('<p style="margin:0;">Kind regards', '<img src="https://acme.test/logo.png"><p style="margin:0;">Kind regards'));
    await page.locator('#warnings').waitFor(PAGE_UPDATE);
    expect(await page.locator('#warnings').innerText()).toMatch(/1 warning \(emails still go out\)\s+closing-soon\.hbs:\d+:\d+: warning: <img> without alt text/);
    expect(await page.locator('#problems-none').count()).toBe(1);
    world.write('closing-soon.hbs', template);
    await page.locator('#warnings').waitFor({ ...PAGE_UPDATE, state: 'detached' });
  });

  it('shows a hostile title as text: no element is injected, no script runs', async () => {
    await page.fill('#search input[name=q]', 'onerror');
    await page.click('#search button[type=submit]');
    await page.click(`#choices a:has-text("${HOSTILE}")`);
    await expect.poll(() => subject().innerText(), PAGE_UPDATE).toContain(HOSTILE);
    expect(await page.locator('#current-opportunity').innerText()).toContain(HOSTILE);
    expect(await page.locator('img').count()).toBe(0);
    expect(await page.frameLocator('iframe#desktop').locator('body').innerText()).toContain(HOSTILE);
    expect(await page.frameLocator('iframe#desktop').locator('img').count()).toBe(0);
    expect(dialogs).toEqual([]);
  });

  it('shows the simulate calendar and the forecast chart for the demo data', async () => {
    await page.goto(preview.url);
    expect(await page.locator('#calendar table.calendar td.day').count()).toBeGreaterThanOrEqual(30);
    expect(await page.locator('#calendar td.busy .send').count()).toBeGreaterThan(0);
    expect(await page.locator('#calendar').innerText()).toMatch(/✉ closing-in-\d+-days ×\d/);
    const eur = page.locator('#forecast figure[data-currency="EUR"] svg');
    expect(await eur.locator('rect.amount').count()).toBeGreaterThan(0);
    expect(await eur.locator('rect.expected').count()).toBeGreaterThan(0);
    expect(await page.locator('#forecast').innerText()).toMatch(/3m/);
  });

  it('answers only to local host names, and logs no addresses or titles', async () => {
    expect(await getWithHost(preview.url, 'attacker.example')).toBe(403);
    expect(await getWithHost(preview.url, new URL(preview.url).host)).toBe(200);
    const output = preview.output();
    expect(output).toMatch(/reloaded/);
    for (const secret of ['alice.martin@example.com', 'hostile@customer.test', 'Trip to the USA', 'onerror']) expect(output).not.toContain(secret);
  });
});

describe('nudge preview with only the templates folder', () => {
  it('previews the built-in sample opportunity when DATABASE_URL is not set', async () => {
    const body = await (await fetch(alone.url)).text();
    expect(body).toMatch(/DATABASE_URL is not set/);
    expect(body).toMatch(/id="subject">[^<]*Trip to the USA/);
    expect(body).toMatch(/id="headers"[\s\S]*X-Nudge-Step/);
    expect(body).toMatch(/The calendar needs a reachable database/);
  });
});

/** The page's text for `query`, tags removed and entities read, as a marketer reads it. */
async function pageText(base: string, query: string): Promise<string> {
  const res = await fetch(new URL(query, base));
  expect(res.status).toBe(200);
  const body = await res.text();
  return body.replace(/<script[\s\S]*?<\/script>|<style[\s\S]*?<\/style>|srcdoc="[^"]*"/g, '').replace(/<[^>]+>/g, ' ')
    .replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&').replace(/\s+/g, ' ');
}

describe('nudge preview: picking, and what it says about the pick', () => {
  const ids: Record<string, number> = {};

  beforeAll(async () => {
    const db = world.database.db;
    const german = await insertContact(db, { email: 'greta@customer.test', locale: 'de' });
    ids.germanContact = german;
    ids.german = await insertOpportunity(db, { title: 'Fietstocht door Nederland', stage: 'proposal', primary_contact_id: german, closing_date: '2030-02-01' });
    const bad = await insertContact(db, { email: 'not-an-email', locale: 'en' });
    ids.badAddress = await insertOpportunity(db, { title: 'Bad address deal', stage: 'proposal', primary_contact_id: bad, closing_date: '2030-02-01' });
    const gone = await insertContact(db, { email: 'gone@customer.test', unsubscribed_at: new Date('2026-01-01T00:00:00Z'), time_zone: 'Mars/Olympus' });
    ids.unsubscribed = await insertOpportunity(db, { title: 'Unsubscribed deal', stage: 'won', primary_contact_id: gone, closing_date: '2030-02-01' });
    ids.qualification = await insertOpportunity(db, { title: 'Early deal', stage: 'qualification', primary_contact_id: german, closing_date: '2030-02-01' });
    ids.lostAlone = await insertOpportunity(db, { title: 'Lost deal without contact', stage: 'lost', closing_date: '2030-02-01' });
  });

  it('"the recipient\'s" locale (the empty choice) renders in the recipient\'s own locale', async () => {
    const own = await pageText(preview.url, `/?opportunity=${ids.german}&step=closing-in-14-days&locale=`);
    expect(own).toMatch(/Template file closing-soon\.de\.hbs/);
    expect(own).toMatch(/Rendered for locale de,/);
    const picked = await pageText(preview.url, `/?opportunity=${ids.german}&step=closing-in-14-days&locale=en`);
    expect(picked).toMatch(/Template file closing-soon\.hbs/);
    expect(`${own} ${picked}`).not.toMatch(/There is no closing-soon/);
    // No French variant: English words, French formats, as the real email has them; said so.
    const french = await insertContact(world.database.db, { email: 'fr@customer.test', locale: 'fr-FR' });
    const frenchDeal = await insertOpportunity(world.database.db, { title: 'Voyage', stage: 'proposal', primary_contact_id: french, closing_date: '2030-02-01', amount: '1234.50' });
    const mixed = await pageText(preview.url, `/?opportunity=${frenchDeal}&step=closing-in-14-days`);
    expect(mixed).toContain('There is no closing-soon.fr-FR.hbs nor closing-soon.fr.hbs: the email has the base file\'s text, with dates and amounts formatted for fr-FR.');
    expect(mixed).toMatch(/decide by 1 février 2030/);
  });

  it('a search picks its first match, keeps an opportunity that matches, and says when nothing does', async () => {
    const found = await pageText(preview.url, `/?opportunity=${ids.badAddress}&q=Fietstocht`);
    expect(found).toContain(`#${ids.german} Fietstocht door Nederland ·`);
    const kept = await pageText(preview.url, `/?opportunity=${ids.german}&q=door`);
    expect(kept).toContain(`#${ids.german} Fietstocht door Nederland ·`);
    const none = await pageText(preview.url, `/?opportunity=${ids.german}&q=nothing-is-called-this`);
    expect(none).toContain(`#${ids.german} Fietstocht door Nederland ·`);
    expect(none).toContain('No opportunity matches "nothing-is-called-this".');
    // On the sample, the search form does not carry it: a search picks its first match.
    const onSample = await (await fetch(new URL('/?opportunity=sample', preview.url))).text();
    expect(/<form[^>]*id="search"[\s\S]*?<\/form>/.exec(onSample)![0]).not.toContain('name="opportunity"');
    const byId = await pageText(preview.url, `/?q=%23${ids.badAddress}`);
    expect(byId).toContain(`#${ids.badAddress} Bad address deal ·`);
    // An id beyond 2^53 (bigint), found and shown as itself, not silently as another.
    const big = '9007199254740993';
    await sql`insert into opportunities (id, title, stage, closing_date) values (${big}::bigint, 'Beyond doubles', 'proposal', '2030-02-01')`.execute(world.database.db);
    expect(await pageText(preview.url, `/?q=${big}`)).toContain(`#${big} Beyond doubles ·`);
    expect(await pageText(preview.url, `/?opportunity=${big}`)).toContain(`#${big} Beyond doubles ·`);
    expect(await pageText(preview.url, '/?opportunity=9999999999999999999')).toContain('Opportunity #9999999999999999999 does not exist');
    await sql`delete from opportunities where id = ${big}::bigint`.execute(world.database.db);
  });

  // A marketer who tried the sample's unsubscribe link unsubscribed contact #1, a real customer.
  it('signs the sample\'s and a stand-in recipient\'s unsubscribe link for nobody', async () => {
    const sample = await pageText(preview.url, '/?opportunity=sample&step=closing-in-14-days');
    expect(sample).toMatch(/X-Nudge-Opportunity 0 /);
    expect(sample).toMatch(/List-Unsubscribe <https:\/\/nudge\.acme\.test\/unsubscribe\/c0\.[\w-]+>/);
    const standIn = await pageText(preview.url, `/?opportunity=${ids.lostAlone}&step=closing-in-14-days`);
    expect(standIn).toMatch(/Hello Alex/);
    expect(standIn).toMatch(/List-Unsubscribe <https:\/\/nudge\.acme\.test\/unsubscribe\/c0\.[\w-]+>/);
    expect(`${sample} ${standIn}`).not.toMatch(/unsubscribe\/c[1-9]/);
  });

  it('says when more opportunities match than it lists', async () => {
    expect(await pageText(preview.url, '/?q=Filler')).not.toContain('more match');
    for (let i = 1; i <= 21; i++) await insertOpportunity(world.database.db, { title: `Filler ${i}`, stage: 'qualification' });
    const text = await pageText(preview.url, '/?q=Filler');
    expect(text).toContain('more match: type more of the title, or the id');
    const listed = (await (await fetch(new URL('/?q=Filler', preview.url))).text()).match(/>#\d+ Filler \d+<\/a>/g);
    expect(listed).toHaveLength(20);
    expect(await pageText(preview.url, '/?q=Filler 21')).not.toContain('more match');
  });

  it('says what would stop the email: a bad address, an unsubscribed recipient, a closed deal, an unknown zone', async () => {
    const bad = await pageText(preview.url, `/?opportunity=${ids.badAddress}&step=closing-in-14-days`);
    expect(bad).toContain("The recipient's address is not valid (it would be suppressed as invalid_email).");
    const gone = await pageText(preview.url, `/?opportunity=${ids.unsubscribed}&step=closing-in-14-days`);
    expect(gone).toContain('The opportunity is won: no step goes out (not eligible; opportunity_closed at send time).');
    expect(gone).toContain('The recipient has unsubscribed (it would be suppressed as unsubscribed).');
    expect(gone).toContain('The recipient\'s time zone "Mars/Olympus" is unknown: times are those of Europe/Brussels.');
    const fine = await pageText(preview.url, `/?opportunity=${ids.german}&step=closing-in-14-days`);
    expect(fine).not.toMatch(/would be suppressed|is unknown|not eligible/);
    const filtered = await pageText(preview.url, `/?opportunity=${ids.qualification}&step=closing-in-3-days`);
    expect(filtered).toContain('Step "closing-in-3-days" does not apply to this opportunity: stage qualification is not one of proposal, negotiation (not eligible; stage_not_eligible at send time).');
    // A closed deal without anyone to send to: closed comes first.
    const nobody = await pageText(preview.url, `/?opportunity=${ids.lostAlone}&step=closing-in-14-days`);
    expect(nobody).toContain('The opportunity is lost: no step goes out');
    expect(nobody).toContain('(it would be suppressed as no_contact)');
    // Stale: the usual state of a deal whose date nobody moved. Its owner step still goes.
    const stale = await insertOpportunity(world.database.db, { title: 'Stale deal', stage: 'proposal', primary_contact_id: ids.germanContact!, closing_date: '2020-03-01' });
    const passed = 'The closing date 2020-03-01 has passed: a step to the customer is not sent until the date is moved later (suppressed as closing_date_passed).';
    expect(await pageText(preview.url, `/?opportunity=${stale}&step=closing-in-14-days`)).toContain(passed);
    expect(await pageText(preview.url, `/?opportunity=${stale}&step=update-closing-date`)).not.toContain('The closing date 2020-03-01 has passed');
    expect(fine).not.toContain('has passed: a step to the customer');
  });

  it('says when a link names a step or template that is not there', async () => {
    expect(await pageText(preview.url, '/?step=renamed-step')).toContain('journeys.yaml has no step "renamed-step": showing step "closing-in-14-days".');
    expect(await pageText(preview.url, '/?template=gone')).toContain('There is no template "gone": showing "closing-soon".');
    expect(await pageText(preview.url, '/?step=closing-in-3-days')).not.toMatch(/has no step|There is no template/);
  });
});

describe('nudge preview: files removed and put back', () => {
  const subjectOf = async (base: string) => /Subject (.*?) Preheader/.exec(await pageText(base, '/?opportunity=sample&step=closing-in-14-days'))?.[1] ?? null;

  it('picks up the templates folder again after it was deleted and put back', async () => {
    rmSync(world.templatesDir, { recursive: true, force: true });
    await expect.poll(async () => pageText(preview.url, '/'), PAGE_UPDATE).toContain('the templates folder does not exist or cannot be read');
    cpSync(path.join(REPO, 'templates'), world.templatesDir, { recursive: true });
    await expect.poll(() => subjectOf(preview.url), PAGE_UPDATE).toContain('Trip to the USA');
    world.write('closing-soon.hbs', template.replace(/^subject: .*$/m, 'subject: "Back again: {{reference}}"'));
    await expect.poll(() => subjectOf(preview.url), PAGE_UPDATE).toBe('Back again: Trip to the USA');
  });

  it('follows a journey file outside the templates folder through a delete and an editor\'s rename-and-write save', async () => {
    const outside = mkdtempSync(path.join(os.tmpdir(), 'nudge-journey-'));
    const file = path.join(outside, 'journeys.yaml');
    const shipped = readFileSync(path.join(REPO, 'templates', 'journeys.yaml'), 'utf8');
    writeFileSync(file, shipped);
    const own = await startPreview({ ...world.env, DATABASE_URL: undefined, NUDGE_JOURNEYS: file });
    const steps = async () => (await pageText(own.url, '/')).match(/closing-in-\d+-days|renamed-\d+/g)?.join(',') ?? '';
    try {
      expect(await steps()).toContain('closing-in-14-days');
      rmSync(file);
      await expect.poll(async () => pageText(own.url, '/'), PAGE_UPDATE).toContain('cannot read the journey file');
      writeFileSync(file, shipped.replace('id: closing-in-14-days', 'id: renamed-1'));
      await expect.poll(steps, PAGE_UPDATE).toContain('renamed-1');
      // vim's save: the old file moved aside, a new one written, the old one removed.
      renameSync(file, `${file}~`);
      writeFileSync(file, shipped.replace('id: closing-in-14-days', 'id: renamed-2'));
      rmSync(`${file}~`);
      await expect.poll(steps, PAGE_UPDATE).toContain('renamed-2');
      writeFileSync(file, shipped.replace('id: closing-in-14-days', 'id: renamed-3'));
      await expect.poll(steps, PAGE_UPDATE).toContain('renamed-3');
    } finally {
      await own.stop();
      rmSync(outside, { recursive: true, force: true });
    }
  });
});
