/**
 * Templates are semi-trusted: one that loops, fans out, recurses or grows without end is stopped
 * with a TemplateError naming the file and line (src/email/budget.ts), never a stuck or crashed
 * process. Each test owns a templates folder under the OS temp dir.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS } from '../../src/email/budget.ts';
import {
  checkTemplates, formatProblem, loadTemplates, TemplateError, type LoadOptions, type TemplateContext, type Templates,
} from '../../src/email/templates.ts';

const EN = { locale: 'en', timeZone: 'UTC' };

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function load(files: Record<string, string>, options: LoadOptions = {}): Templates {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nudge-limits-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), text);
  }
  const { templates, problems } = loadTemplates(dir, options);
  expect(problems.map(formatProblem)).toEqual([]);
  return templates;
}

const email = (body: string) => `---\nsubject: "About {{reference}}"\n---\n${body}`;

/** The context of every email, plus whatever a test adds (a large list, a long title). */
function context(extra: Record<string, unknown> = {}, title = 'Trip to the USA'): TemplateContext {
  return {
    opportunity: {
      id: 7, title, amount: '12000.00', currency: 'EUR', closingDate: '2026-03-01',
      stage: { key: 'proposal', label: 'Proposal', probability: 50 }, expectedRevenue: '6000.00',
    },
    contact: { firstName: 'Ada', lastName: 'Lovelace', email: 'ada@example.com', locale: 'en' },
    owner: { email: 'sam@example.com' },
    reference: title,
    unsubscribeUrl: 'https://nudge.example.com/unsubscribe/tok',
    ...extra,
  } as TemplateContext;
}

/** Renders, expecting a TemplateError; returns its text and how long the render took. */
function refused(templates: Templates, name: string, ctx: TemplateContext = context()): { message: string; ms: number } {
  const started = performance.now();
  try {
    templates.render(name, ctx, EN);
  } catch (error) {
    expect(error).toBeInstanceOf(TemplateError);
    return { message: (error as TemplateError).message, ms: performance.now() - started };
  }
  throw new Error('expected a TemplateError, the template rendered');
}

const nested = (depth: number, over: string, inner: string) => `${`{{#each @root.${over}}}`.repeat(depth)}${inner}${'{{/each}}'.repeat(depth)}`;

describe('size', () => {
  it('nested {{#each}} over a large list in the context stops at 1 MiB of HTML', () => {
    expect(DEFAULT_LIMITS.maxHtmlBytes).toBe(1024 * 1024);
    // The default size limit; the time limit is lifted so that a slow machine cannot trip it first.
    const templates = load({ 'big.hbs': email(`<p>Hello</p>\n${nested(2, 'list', '<p>{{@root.reference}}</p>')}\n`) }, { limits: { maxMs: 60_000 } });
    const list = Array.from({ length: 3000 }, (_, i) => i);
    // 3000 × 3000 paragraphs of ~45 characters would be 400 MB: stopped after ~23,000 of them.
    const { message } = refused(templates, 'big', context({ list }, 'A trip to the USA for the whole family'));
    expect(message).toBe('big.hbs:5:21: the email is larger than 1048576 bytes (fix: an email this large is clipped or refused by mail programs: shorten it or loop over less)');
  });

  it('the finished HTML is measured too, also after CSS inlining', () => {
    const limits = { maxHtmlBytes: 2000 };
    const large = load({ 'l.hbs': email(`<p>${'x'.repeat(2100)}</p>`) }, { limits });
    expect(refused(large, 'l').message).toBe('l.hbs:4: the email is larger than 2000 bytes (fix: an email this large is clipped or refused by mail programs: shorten it or loop over less)');
    const styled = load({
      's.hbs': email(`<style>* { font-family: Arial, Helvetica, sans-serif; color: #1f2933; line-height: 24px; }</style>\n${'<p>x</p>'.repeat(60)}`),
    }, { limits });
    const rendered = (() => {
      try {
        return styled.render('s', context(), EN).html;
      } catch (error) {
        return (error as Error).message;
      }
    })();
    expect(rendered).toBe('s.hbs:4: with its CSS inlined, the email is larger than 2000 bytes (fix: an email this large is clipped or refused by mail programs: shorten it or loop over less)');
  });

  it('an email below the limits renders as usual', () => {
    const templates = load({ 'ok.hbs': email('{{#each @root.list}}<li>{{this}}</li>{{/each}}') });
    expect(templates.render('ok', context({ list: [1, 2, 3] }), EN).html).toBe('<li>1</li><li>2</li><li>3</li>');
  });
});

describe('loops and time', () => {
  it('loops nested over the context stop at the iteration budget', () => {
    // 9 levels over the 5 keys of the context: ~2 million iterations that print nothing.
    const templates = load({ 'loop.hbs': email(`<p>x</p>\n${nested(9, 'opportunity', '')}`) }, { limits: { maxMs: 60_000 } });
    const { message } = refused(templates, 'loop');
    expect(message).toBe('loop.hbs:5:217: the email needs more than 100000 loop iterations and partial calls (fix: a {{#each}} inside {{#each}} or a partial that includes partials multiplies: flatten it)');
  });

  it('a render that takes too long is stopped in time', () => {
    const templates = load({ 'slow.hbs': email(nested(12, 'opportunity', '')) }, { limits: { maxSteps: Number.MAX_SAFE_INTEGER, maxMs: 200 } });
    const { message, ms } = refused(templates, 'slow');
    expect(message).toMatch(/^slow\.hbs:4:\d+: the email took more than 200 ms of CPU time to render \(fix: /);
    // CPU time of the process: at least half of it is wall-clock time even with a parallel GC.
    expect(ms).toBeGreaterThanOrEqual(100);
    // Unstopped, 7^12 iterations would take hours.
    expect(ms).toBeLessThan(30_000);
  });

  it('partials that include partials several times stop at the same budget', () => {
    // p0 includes p1 three times, p1 includes p2 three times, ... : 3^11 = 177147 calls, no loop.
    const files: Record<string, string> = { 'fan.hbs': email('{{> p0}}') };
    for (let i = 0; i < 11; i++) files[`partials/p${i}.hbs`] = `{{> p${i + 1}}}{{> p${i + 1}}}{{> p${i + 1}}}`;
    files['partials/p11.hbs'] = 'x';
    const { message } = refused(load(files, { limits: { maxMs: 60_000 } }), 'fan');
    expect(message).toMatch(/^partials\/p\d+\.hbs:1:1: the email needs more than 100000 loop iterations and partial calls/);
  });
});

describe('recursion', () => {
  it('a partial that includes itself', () => {
    const templates = load({ 'r.hbs': email('<p>Hello</p>\n{{> self}}'), 'partials/self.hbs': '<div>\n  {{> self}}</div>' });
    expect(refused(templates, 'r').message).toBe('partials/self.hbs:2:3: partials nested more than 16 deep at "self" (fix: a partial must not include itself, directly or through another partial ("self"))');
  });

  it('two partials that include each other', () => {
    const templates = load({ 'r.hbs': email('{{> ping}}'), 'partials/ping.hbs': 'ping {{> pong}}', 'partials/pong.hbs': 'pong\n{{> ping}}' });
    expect(refused(templates, 'r').message).toMatch(/^partials\/p[io]ng\.hbs:\d:\d+: partials nested more than 16 deep at "p[io]ng"/);
  });

  it('an inline partial that includes itself', () => {
    const templates = load({ 'r.hbs': email('{{#*inline "again"}}<p>{{> again}}</p>{{/inline}}\n{{> again}}') });
    expect(refused(templates, 'r').message).toBe('r.hbs:4:24: partials nested more than 16 deep at "again" (fix: a partial must not include itself, directly or through another partial ("again"))');
  });

  it('is reported by templates check, not thrown at it', () => {
    const templates = load({ 'r.hbs': email('{{> self}}'), 'partials/self.hbs': '{{> self}}' });
    expect(checkTemplates(templates, [{ template: 'r', stepId: 's', audience: 'customer' }]).map(formatProblem))
      .toEqual(['partials/self.hbs:1:1: partials nested more than 16 deep at "self" (fix: a partial must not include itself, directly or through another partial ("self"))']);
  });

  it('the next render of the same templates is not affected', () => {
    const templates = load({ 'r.hbs': email('{{> self}}'), 'partials/self.hbs': '{{> self}}', 'ok.hbs': email('{{#each @root.opportunity.stage}}[{{this}}]{{/each}}') });
    refused(templates, 'r');
    expect(templates.render('ok', context(), EN).html).toBe('[proposal][Proposal][50]');
  });
});
