/**
 * `nudge preview` as a marketer meets it: the real command in its own process, the page in a real
 * Chromium, the demo pipeline in a real PostgreSQL, and template files edited on disk while the
 * page is open.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedDemo } from '../src/seed.ts';
import { launchBrowser } from './helpers/browser.ts';
import { spawnNudge } from './helpers/cli.ts';
import { insertContact, insertOpportunity } from './helpers/fixtures.ts';
import { createWorld, type World } from './helpers/world.ts';

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
