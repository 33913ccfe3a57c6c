/**
 * Tests for src/email/templates.ts: locale variants, layouts and partials, escaping, helpers,
 * strict errors with file and line, and the shipped templates/ folder. Each test writes its own
 * templates folder under the OS temp dir and removes it afterwards.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import {
  checkTemplates, formatProblem, loadTemplates, TemplateError, unusedTemplateProblems,
  type TemplateContext, type TemplateProblem, type Templates, type TemplateUsage,
} from '../../src/email/templates.ts';

const SHIPPED = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../templates');
const EN = { locale: 'en', timeZone: 'UTC' };

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

/** A templates folder holding exactly `files` (paths relative to it). */
function folder(files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nudge-templates-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

/** Loads `files`, failing the test on any load problem. */
function load(files: Record<string, string>): Templates {
  const { templates, problems } = loadTemplates(folder(files));
  expect(problems.map(formatProblem)).toEqual([]);
  return templates;
}

function context(over: { title?: string; amount?: string | null; closingDate?: string | null } = {}): TemplateContext {
  const title = over.title ?? 'Trip to the USA';
  const amount = over.amount === undefined ? '12000.50' : over.amount;
  return {
    opportunity: {
      id: 7, title, amount, currency: 'EUR', closingDate: over.closingDate === undefined ? '2026-03-01' : over.closingDate,
      stage: { key: 'proposal', label: 'Proposal', probability: 50 }, expectedRevenue: amount === null ? null : '6000.25',
    },
    contact: { firstName: 'Ada', lastName: 'Lovelace', email: 'ada@example.com', locale: 'en' },
    owner: { email: 'sam@example.com' },
    reference: title,
    unsubscribeUrl: 'https://nudge.example.com/unsubscribe/tok',
  };
}

const ownerContext = (): TemplateContext => ({ ...context(), contact: null, unsubscribeUrl: null });

/** The error `fn` throws, which must be a TemplateError. */
function templateError(fn: () => unknown): TemplateProblem {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(TemplateError);
    expect((error as TemplateError).message).toBe(formatProblem((error as TemplateError).problem));
    return (error as TemplateError).problem;
  }
  throw new Error('expected a TemplateError, nothing was thrown');
}

const email = (body: string, subject = 'About {{reference}}') => `---\nsubject: "${subject}"\n---\n${body}`;
const use = (template: string, audience: TemplateUsage['audience'] = 'customer', stepId = `step-${template}`): TemplateUsage => ({ template, stepId, audience });

describe('locale variants', () => {
  const files = {
    'greet.hbs': email('base'),
    'greet.de.hbs': email('de'),
    'greet.de-AT.hbs': email('de-AT'),
    'greet.pt-BR.hbs': email('pt-BR'),
  };

  it.each([
    ['de-AT', 'greet.de-AT.hbs', 'de-AT'],
    ['DE-at', 'greet.de-AT.hbs', 'de-AT'], // case-insensitive
    ['de_AT', 'greet.de-AT.hbs', 'de-AT'], // CRM spelling with an underscore
    ['de-CH', 'greet.de.hbs', 'de'], // region without a file: the language
    ['de', 'greet.de.hbs', 'de'],
    ['pt', 'greet.hbs', 'base'], // only pt-BR exists: a region never stands in for the language
    ['fr', 'greet.hbs', 'base'],
    ['en-GB', 'greet.hbs', 'base'],
  ])('%s renders %s', (locale, file, body) => {
    const rendered = load(files).render('greet', context(), { locale, timeZone: 'UTC' });
    expect(rendered.file).toBe(file);
    expect(rendered.html).toBe(body);
  });

  it('lists base templates only, sorted', () => {
    const templates = load({ ...files, 'bye.hbs': email('x'), 'layouts/main.hbs': '{{{body}}}', 'partials/p.hbs': 'p', 'journeys.yaml': 'steps: []\n' });
    expect(templates.names()).toEqual(['bye', 'greet']);
    expect(templates.has('greet')).toBe(true);
    expect(templates.has('greet.de')).toBe(false);
    expect(templates.has('p')).toBe(false);
  });
});

describe('layouts and partials', () => {
  const files = {
    'offer.hbs': '---\nsubject: "Offer {{reference}}"\npreheader: "Preview for {{reference}}"\nlayout: main\n---\n<p>Body for {{reference}}</p>\n{{> sign name="Sam"}}\n',
    'layouts/main.hbs': '<html><head><title>{{subject}}</title></head><body><span class="preheader">{{preheader}}</span><div id="frame">{{{body}}}</div>{{> footer}}</body></html>',
    'partials/sign.hbs': '<p>Regards, {{name}}</p>',
    'partials/footer.hbs': '{{#if unsubscribeUrl}}<a href="{{unsubscribeUrl}}">Unsubscribe</a>{{/if}}',
  };

  it('places the body in the layout, with partials, and derives the text from the final HTML', () => {
    const r = load(files).render('offer', context(), EN);
    expect(r.subject).toBe('Offer Trip to the USA');
    expect(r.preheader).toBe('Preview for Trip to the USA');
    expect(r.html).toBe(
      '<html><head><title>Offer Trip to the USA</title></head><body><span class="preheader">Preview for Trip to the USA</span>'
      + '<div id="frame"><p>Body for Trip to the USA</p>\n<p>Regards, Sam</p></div>'
      + '<a href="https://nudge.example.com/unsubscribe/tok">Unsubscribe</a></body></html>',
    );
    expect(r.text).toBe('Body for Trip to the USA\n\nRegards, Sam\n\nUnsubscribe [https://nudge.example.com/unsubscribe/tok]');
  });

  it('sends a template without a layout as it is', () => {
    const r = load({ 'plain.hbs': email('<p>{{reference}}</p>') }).render('plain', context(), EN);
    expect(r.html).toBe('<p>Trip to the USA</p>');
    expect(r.preheader).toBeNull();
    expect(r.text).toBe('Trip to the USA');
  });

  it('wraps the plain text at 78 columns', () => {
    const words = Array.from({ length: 40 }, (_, i) => `word${i}`).join(' ');
    const r = load({ 'long.hbs': email(`<p>${words}</p>`) }).render('long', context(), EN);
    const lines = r.text.split('\n');
    expect(lines.length).toBeGreaterThan(1);
    expect(Math.max(...lines.map((l) => l.length))).toBeLessThanOrEqual(78);
  });
});

describe('what the CRM wrote', () => {
  const files = { 'echo.hbs': '---\nsubject: "Your request “{{reference}}”"\npreheader: "{{reference}}"\n---\n<p>{{reference}}</p><p>{{opportunity.title}}</p>\n' };

  it('is escaped in the HTML and kept plain in the subject', () => {
    const title = '<script>alert(1)</script> & "x"';
    const r = load(files).render('echo', context({ title }), EN);
    expect(r.html).toBe('<p>&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;x&quot;</p><p>&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;x&quot;</p>\n');
    expect(r.html).not.toContain('<script>');
    expect(r.subject).toBe('Your request “<script>alert(1)</script> & "x"”');
  });

  it('cannot add a header line: CR, LF and control characters leave the subject', () => {
    const r = load(files).render('echo', context({ title: 'Trip\r\nBcc: x@evil \u0007\u0085\u2028 end' }), EN);
    expect(r.subject).toBe('Your request “Trip Bcc: x@evil end”');
    expect(r.subject).not.toMatch(/[\r\n\u0000-\u001F\u007F-\u009F]/);
    expect(r.preheader).toBe('Trip Bcc: x@evil end');
    // Nor the body: HTML and plain text have no place for a BEL or a NUL typed into the CRM.
    const body = load(files).render('echo', context({ title: 'Trip\u0007 to\u0000 the\u0085 USA\tend' }), EN);
    expect(body.html).toContain('<p>Trip to the USA\tend</p>');
    expect(`${body.html}${body.text}`).not.toMatch(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]/);
    // A right-to-left override would make the subject read other than it is: removed.
    expect(load(files).render('echo', context({ title: 'invoice\u202Efdp.exe' }), EN).subject).toBe('Your request “invoicefdp.exe”');
  });
});

describe('formatMoney', () => {
  const files = { 'money.hbs': email('[{{formatMoney opportunity.amount opportunity.currency}}]') };

  it.each([[null], [''], ['   ']])('gives nothing for a blank amount (%j)', (amount) => {
    const html = load(files).render('money', context({ amount }), EN).html;
    expect(html).toBe('[]');
    expect(html).not.toMatch(/NaN|null|undefined|0/);
  });

  it.each([
    ['en', '12000.50', '[€12,000.50]'],
    ['en', '12000.00', '[€12,000]'],
    ['de', '12000.50', '[12.000,50\u00a0€]'],
    ['de-AT', '0.10', '[€\u00a00,10]'],
    ['en', '123456789012.34', '[€123,456,789,012.34]'], // exact: no float rounding
  ])('formats in the recipient locale (%s, %s)', (locale, amount, expected) => {
    expect(load(files).render('money', context({ amount }), { locale, timeZone: 'UTC' }).html).toBe(expected);
  });

  it('refuses an amount that is not a decimal instead of printing NaN', () => {
    const problem = templateError(() => load(files).render('money', context({ amount: 'abc' }), EN));
    expect(problem).toMatchObject({ file: 'money.hbs', line: 4 });
    expect(problem.message).toContain('formatMoney');
  });
});

describe('formatDate', () => {
  const files = { 'date.hbs': email('[{{formatDate opportunity.closingDate}}|{{formatDate opportunity.closingDate style="short"}}]') };

  it.each([
    ['en', '[March 1, 2026|3/1/26]'],
    ['de', '[1. März 2026|01.03.26]'],
    ['en-GB', '[1 March 2026|01/03/2026]'],
    // Malformed (a region twice), as a CRM may hold it: still German, as the .de file it picks.
    ['de-DE-DE', '[1. März 2026|01.03.26]'],
    ['de_AT', '[1. März 2026|01.03.26]'],
    [' de-AT-AT ', '[1. März 2026|01.03.26]'],
  ])('formats a calendar day in the recipient locale (%s)', (locale, expected) => {
    expect(load(files).render('date', context(), { locale, timeZone: 'Pacific/Kiritimati' }).html).toBe(expected);
  });

  it('gives nothing for a blank date', () => {
    expect(load(files).render('date', context({ closingDate: null }), EN).html).toBe('[|]');
  });

  it('refuses an unknown style', () => {
    const templates = load({ 'bad.hbs': email('\n{{formatDate opportunity.closingDate style="tiny"}}') });
    const problem = templateError(() => templates.render('bad', context(), EN));
    expect(problem).toMatchObject({ file: 'bad.hbs', line: 5 });
    expect(problem.message).toContain('style="tiny"');
  });

  describe('never shifts the day, whatever the process time zone', () => {
    const saved = process.env.TZ;
    afterEach(() => {
      if (saved === undefined) delete process.env.TZ;
      else process.env.TZ = saved;
    });

    it.each([
      // Kiritimati is UTC+14: local midnight of March 1 is still February 28 in UTC.
      ['Pacific/Kiritimati', '2026-02-28T10:00:00.000Z'],
      // Los Angeles is UTC-8: a UTC midnight is still February 28 there.
      ['America/Los_Angeles', '2026-03-01T08:00:00.000Z'],
    ])('TZ=%s', (zone, localMidnight) => {
      process.env.TZ = zone;
      // The process really runs in that zone: a naive local date lands on another UTC day.
      expect(new Date(2026, 2, 1).toISOString()).toBe(localMidnight);
      const { templates, problems } = loadTemplates(SHIPPED);
      expect(problems).toEqual([]);
      const ctx = context({ closingDate: '2026-03-01' });
      for (const timeZone of ['Pacific/Kiritimati', 'America/Los_Angeles']) {
        const en = templates.render('closing-soon', ctx, { locale: 'en', timeZone });
        expect(en.html).toContain('March 1, 2026');
        expect(en.html).not.toMatch(/February 28|March 2,/);
        expect(en.preheader).toContain('March 1, 2026');
        const de = templates.render('closing-soon', ctx, { locale: 'de', timeZone });
        expect(de.html).toContain('1. März 2026');
        expect(de.html).not.toMatch(/28\. Februar|2\. März/);
      }
    });
  });
});

describe('strict rendering: problems name the file and the line', () => {
  it('a misspelt variable at the root', () => {
    const dir = folder({ 'typo.hbs': email('<p>Hello</p>\n  <p>{{oportunity.title}}</p>\n') });
    const { templates, problems } = loadTemplates(dir);
    expect(problems).toEqual([]);
    expect(templateError(() => templates.render('typo', context(), EN))).toEqual({
      file: 'typo.hbs', line: 5, column: 8, message: 'unknown variable "oportunity.title"', hint: 'use a variable listed in the README (Templates)',
    });
    const checked = checkTemplates(templates, [use('typo')]);
    expect(checked).toHaveLength(1);
    expect(formatProblem(checked[0]!)).toBe('typo.hbs:5:8: unknown variable "oportunity.title" (fix: did you mean "opportunity"?)');
  });

  // Handlebars calls a helper it does not have "not defined", as it does a variable.
  it.each([
    ['{{shout opportunity.title}}', 8], ['{{formatDate (shout opportunity.title)}}', 20], ['{{#shout opportunity.title}}x{{/shout}}', 9],
  ])('an unknown helper, %s, is named as a helper when rendered', (use, column) => {
    const dir = folder({ 'h.hbs': email(`<p>Hello</p>\n  <p>${use}</p>\n`) });
    const { templates } = loadTemplates(dir);
    expect(templateError(() => templates.render('h', context(), EN))).toEqual({
      file: 'h.hbs', line: 5, column, message: 'unknown helper "shout"', hint: 'use a helper listed in the README (Templates)',
    });
  });

  it('a misspelling in a branch no sample render takes', () => {
    // `reference` is never blank, so this branch never renders: only reading the template finds it.
    const templates = load({ 'branch.hbs': email('<p>{{reference}}</p>\n{{#unless reference}}\n  {{opportunity.titel}}\n{{/unless}}\n') });
    expect(templates.render('branch', context(), EN).html).toBe('<p>Trip to the USA</p>\n');
    const problems = checkTemplates(templates, [use('branch')]);
    expect(problems.map(formatProblem)).toEqual(['branch.hbs:6:5: unknown variable "opportunity.titel" (fix: did you mean "title"?)']);
  });

  it('a misspelling inside {{#if}} that the sample with an amount reaches', () => {
    const templates = load({ 'if.hbs': email('{{#if opportunity.amount}}\n{{opportunity.amout}}\n{{/if}}') });
    expect(templates.render('if', context({ amount: null }), EN).html).toBe('');
    expect(templateError(() => templates.render('if', context(), EN))).toMatchObject({ file: 'if.hbs', line: 5, column: 3 });
    expect(checkTemplates(templates, [use('if')]).map(formatProblem)).toEqual(['if.hbs:5:3: unknown variable "opportunity.amout" (fix: did you mean "amount"?)']);
  });

  it('a missing partial', () => {
    const templates = load({ 'p.hbs': email('<p>x</p>\n\n{{> signature}}\n') });
    expect(templateError(() => templates.render('p', context(), EN))).toMatchObject({ file: 'p.hbs', line: 6, column: 1 });
    expect(checkTemplates(templates, [use('p')]).map(formatProblem)).toEqual(['p.hbs:6:1: unknown partial "signature" (fix: create partials/signature.hbs or correct the name)']);
  });

  it('an error inside a partial names the partial', () => {
    const templates = load({ 'p.hbs': email('{{> footer}}'), 'partials/footer.hbs': '<p>\n{{unsubscribeURL}}</p>' });
    expect(templateError(() => templates.render('p', context(), EN))).toMatchObject({ file: 'partials/footer.hbs', line: 2, column: 3 });
    expect(checkTemplates(templates, [use('p')]).map(formatProblem)).toEqual(['partials/footer.hbs:2:3: unknown variable "unsubscribeURL" (fix: did you mean "unsubscribeUrl"?)']);
  });

  it('an unknown helper, including the built-in log that would leak data into logs', () => {
    const templates = load({ 'h.hbs': email('{{shout reference}}\n{{log reference}}') });
    expect(templateError(() => templates.render('h', context(), EN))).toMatchObject({ file: 'h.hbs', line: 4 });
    const problems = checkTemplates(templates, [use('h')]).map(formatProblem);
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/^h\.hbs:4:3: unknown helper "shout"/);
    expect(problems[1]).toMatch(/^h\.hbs:5:3: unknown helper "log"/);
  });

  it('every wrong call of formatMoney and formatDate, each at its own line, taken branch or not', () => {
    const templates = load({
      'calls.hbs': email([
        '<p>{{formatDate opportunity.closingDate}}</p>',
        '<p>{{formatDate opportunity.closingDate style="weird"}}</p>',
        '{{#unless reference}}{{formatMoney opportunity.amount}}{{/unless}}',
        '<p>{{formatMoney opportunity.amount opportunity.currency}} {{formatDate opportunity.closingDate size="big"}}</p>',
        '{{#if (formatDate opportunity.closingDate opportunity.closingDate)}}x{{/if}}',
      ].join('\n')),
    });
    // A render stops at the first; it names that call's own place, not the first formatDate's.
    expect(templateError(() => templates.render('calls', context(), EN))).toMatchObject({ file: 'calls.hbs', line: 5, column: 4 });
    expect(checkTemplates(templates, [use('calls')]).map(formatProblem)).toEqual([
      'calls.hbs:5:4: formatDate: style="weird" is not one of short, medium, long, full',
      'calls.hbs:6:22: formatMoney needs an amount and a currency: {{formatMoney opportunity.amount opportunity.currency}}',
      'calls.hbs:7:60: formatDate: unknown option "size" (allowed: style, time)',
      'calls.hbs:8:7: formatDate needs one date: {{formatDate opportunity.closingDate}}',
    ]);
  });

  it('a wrong helper call inside a partial is the partial\'s, at its line', () => {
    const templates = load({
      'p.hbs': email('<p>{{formatDate opportunity.closingDate}}</p>\n{{> when}}'),
      'partials/when.hbs': '<p>{{formatDate opportunity.closingDate style="short"}}</p>\n<p>{{formatDate opportunity.closingDate time="soon"}}</p>\n',
    });
    expect(templateError(() => templates.render('p', context(), EN))).toMatchObject({ file: 'partials/when.hbs', line: 2, column: 4 });
    expect(checkTemplates(templates, [use('p')]).map(formatProblem)).toEqual(['partials/when.hbs:2:4: formatDate: time="soon" is not one of short, medium, long, full']);
  });

  it('a wrong helper call in a partial given another context, in a branch no render takes', () => {
    const templates = load({
      'p.hbs': email('{{#unless reference}}{{> dated opportunity}}{{#with opportunity}}{{> styled}}{{/with}}{{/unless}}'),
      'partials/dated.hbs': '<p>{{formatDate closingDate style=1}}</p>\n',
      'partials/styled.hbs': '<p>{{title}}</p>\n<p>{{formatDate closingDate time=true}}</p>\n',
    });
    // Their variables are the partials' own context, not the email's: not read; their calls are.
    expect(checkTemplates(templates, [use('p')]).map(formatProblem)).toEqual([
      'partials/dated.hbs:1:4: formatDate: style="1" is not one of short, medium, long, full',
      'partials/styled.hbs:2:4: formatDate: time="true" is not one of short, medium, long, full',
    ]);
  });

  it('a syntax error, found at load', () => {
    const { templates, problems } = loadTemplates(folder({ 'broken.hbs': email('<p>one</p>\n<p>two</p>\n<p>{{reference}</p>\n<p>four</p>\n'), 'ok.hbs': email('ok') }));
    expect(problems.map(formatProblem)).toEqual(['broken.hbs:6: syntax error: unexpected character inside {{ }} (fix: is a brace missing? A variable is written {{name}})']);
    expect(templates.has('broken')).toBe(false);
    expect(templates.has('ok')).toBe(true);
    expect(templateError(() => templates.render('broken', context(), EN))).toMatchObject({ file: 'broken.hbs', line: 6 });
  });

  it('an unclosed block, found at load', () => {
    const { problems } = loadTemplates(folder({ 'open.hbs': email('{{#if reference}}\n<p>x</p>\n{{/each}}\n') }));
    expect(problems.map(formatProblem)).toEqual(['open.hbs:4:4: syntax error: {{#if}} is closed by {{/each}} (fix: close it with {{/if}})']);
  });

  // Handlebars says the template ended inside a block, at its last line: the block left open is named, where it opens.
  it.each([
    ['{{#if reference}}\n<p>x</p>\n{{#each items}}{{/each}}\n<p>y</p>\n', 'e.hbs:4:1: syntax error: {{#if}} is not closed before the template ends (fix: close it with {{/if}})'],
    ['<p>{{#each a}}{{#with b}}x{{/with}}\n{{!-- {{#if c}} --}}\n', 'e.hbs:4:4: syntax error: {{#each}} is not closed before the template ends (fix: close it with {{/each}})'],
    ['{{#if a}}{{/if}}\n  {{~#unless b}}\n', 'e.hbs:5:3: syntax error: {{#unless}} is not closed before the template ends (fix: close it with {{/unless}})'],
    // An unclosed {{ is not a block: the end of the file is where Handlebars noticed.
    ['<p>x</p>\n{{reference\n', 'e.hbs:5: syntax error: the template ends inside a block or a {{ }} (fix: close it: is a {{/if}}, {{/each}} or }} missing?)'],
  ])('an unclosed block is named where it opens: %j', (body, expected) => {
    const { problems } = loadTemplates(folder({ 'e.hbs': email(body) }));
    expect(problems.map(formatProblem)).toEqual([expected]);
  });

  it('a syntax error in the subject points into the front-matter', () => {
    const { problems } = loadTemplates(folder({ 's.hbs': '---\nlayout: main\nsubject: Hello {{reference}\n---\nbody', 'layouts/main.hbs': '{{{body}}}' }));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ file: 's.hbs', line: 3 });
  });

  it('an unknown front-matter key', () => {
    const { templates, problems } = loadTemplates(folder({ 'k.hbs': '---\nsubject: Hi\nlayuot: base\n---\nbody\n' }));
    expect(problems.map(formatProblem)).toEqual(['k.hbs:3:1: unknown front-matter key "layuot" (fix: use one of subject, preheader, layout)']);
    expect(templates.has('k')).toBe(false);
  });

  it.each([
    ['no front-matter', '<p>hello</p>', 'k.hbs:1: a template starts with front-matter'],
    ['no subject', '---\npreheader: Hi\n---\nbody', 'k.hbs:1: the front-matter has no subject'],
    ['an unclosed front-matter', '---\nsubject: Hi\nbody', "k.hbs:1: the front-matter opened on line 1 is never closed"],
    ['bad YAML', '---\nsubject: Hi\nsubject: Ho\n---\nbody', 'k.hbs:3:1: front-matter: Map keys must be unique'],
    ['a layout that is a path', '---\nsubject: Hi\nlayout: ../../etc/passwd\n---\nbody', 'k.hbs:3: front-matter: layout "../../etc/passwd" is not a layout name'],
  ])('front-matter: %s', (_, text, expected) => {
    const { problems } = loadTemplates(folder({ 'k.hbs': text }));
    expect(problems).toHaveLength(1);
    expect(formatProblem(problems[0]!)).toContain(expected);
  });

  it('a missing layout', () => {
    const { templates, problems } = loadTemplates(folder({ 'l.hbs': '---\nsubject: Hi\nlayout: fancy\n---\nbody\n' }));
    expect(problems.map(formatProblem)).toEqual(['l.hbs:3: layout "fancy" not found (fix: create layouts/fancy.hbs or correct the layout name)']);
    expect(templateError(() => templates.render('l', context(), EN))).toMatchObject({ file: 'l.hbs', line: 3 });
  });

  it('a layout that never places the body, or misspells a variable', () => {
    const templates = load({ 'l.hbs': '---\nsubject: Hi {{reference}}\nlayout: main\n---\nbody', 'layouts/main.hbs': '<html>\n{{subjet}}</html>' });
    expect(checkTemplates(templates, [use('l')]).map(formatProblem)).toEqual([
      'layouts/main.hbs:2:3: unknown variable "subjet" (fix: did you mean "subject"?)',
      'layouts/main.hbs: the layout never places the body (fix: add {{{body}}} where the email content goes)',
    ]);
  });

  it('a missing templates folder', () => {
    const missing = path.join(os.tmpdir(), `nudge-no-such-folder-${process.pid}`);
    const { templates, problems } = loadTemplates(missing);
    expect(problems.map(formatProblem)).toEqual([`${missing}: the templates folder does not exist or cannot be read (fix: set NUDGE_TEMPLATES_DIR to the folder that holds the .hbs files)`]);
    expect(templates.names()).toEqual([]);
  });

  it('a template a step uses that does not exist names the step', () => {
    const templates = load({ 'a.hbs': email('a') });
    expect(checkTemplates(templates, [use('nope', 'customer', 'closing-in-3-days')]).map(formatProblem))
      .toEqual(['nope.hbs: step "closing-in-3-days" uses template "nope", but nope.hbs does not exist (fix: create nope.hbs or correct "template:" in the journey file)']);
    expect(templateError(() => templates.render('nope', context(), EN))).toMatchObject({ file: 'nope.hbs' });
  });

  it('reports a problem once, however many steps and variants share it', () => {
    const templates = load({ 't.hbs': email('{{> f}}'), 't.de.hbs': email('{{> f}}'), 'partials/f.hbs': '{{refrence}}' });
    const problems = checkTemplates(templates, [use('t', 'customer', 'a'), use('t', 'customer', 'b'), use('t', 'owner', 'c')]);
    expect(problems.map(formatProblem)).toEqual(['partials/f.hbs:1:3: unknown variable "refrence" (fix: did you mean "reference"?)']);
  });

  it('checks each locale variant, not only the base file', () => {
    const templates = load({ 'v.hbs': email('{{reference}}'), 'v.de.hbs': email('\n{{referenz}}') });
    expect(checkTemplates(templates, [use('v')]).map(formatProblem)).toEqual(['v.de.hbs:5:3: unknown variable "referenz" (fix: did you mean "reference"?)']);
  });

  it('checks owner steps without a contact or an unsubscribe address', () => {
    const unguarded = email('<p>{{contact.firstName}}</p>');
    const guarded = email('{{#if contact}}<p>{{contact.firstName}}</p>{{/if}}{{#if unsubscribeUrl}}<a href="{{unsubscribeUrl}}">x</a>{{/if}}');
    const templates = load({ 'unguarded.hbs': unguarded, 'guarded.hbs': guarded });
    expect(checkTemplates(templates, [use('unguarded', 'customer'), use('guarded', 'owner')])).toEqual([]);
    const problems = checkTemplates(templates, [use('unguarded', 'owner')]);
    expect(problems.map(formatProblem)).toEqual(['unguarded.hbs:4:6: "contact.firstName" cannot be read: contact is null here (fix: guard it with {{#if contact}}...{{/if}})']);
    expect(templates.render('guarded', ownerContext(), EN).html).toBe('');
  });
});

describe('prototype access', () => {
  it('{{constructor.name}} is an error, never a leak', () => {
    const templates = load({ 'c.hbs': email('{{constructor.name}}') });
    expect(templateError(() => templates.render('c', context(), EN))).toMatchObject({ file: 'c.hbs', line: 4 });
    expect(checkTemplates(templates, [use('c')]).map(formatProblem)).toEqual(['c.hbs:4:3: "constructor.name" reaches into JavaScript internals ("constructor"): not allowed (fix: remove it: templates read only the variables listed in the README)']);
  });

  it.each([
    ['{{lookup this "__proto__"}}'],
    ['{{lookup opportunity "constructor"}}'],
    ['{{opportunity.constructor}}'],
    ['{{#with (lookup this "constructor")}}{{name}}{{/with}}'],
    // Handlebars always blocks the names above; these show that prototype access is really off.
    ['{{opportunity.toString}}'],
    ['{{lookup opportunity "toString"}}'],
    ['{{#with opportunity.valueOf}}x{{/with}}'],
  ])('%s renders nothing harmful and is reported', (source) => {
    const templates = load({ 'c.hbs': email(`[${source}]`) });
    expect(templates.render('c', context(), EN).html).toBe('[]');
    const problems = checkTemplates(templates, [use('c')]);
    expect(problems).toHaveLength(1);
    expect(problems[0]!.message).toMatch(/JavaScript internal/);
  });
});

describe('what the CRM wrote stays escaped, and what a template reads is checked everywhere', () => {
  it('three braces around a value are an error: the title would go into the HTML as it is', () => {
    const templates = load({ 't.hbs': email('<p>{{{reference}}}</p>\n<p>{{& contact.firstName}}</p>\n<p>{{{formatMoney opportunity.amount opportunity.currency}}}</p>') });
    expect(checkTemplates(templates, [use('t')]).map(formatProblem)).toEqual([
      "t.hbs:4:4: {{{reference}}} puts the CRM's text into the email unescaped (fix: write {{reference}}: values are escaped for HTML (only a layout's {{{body}}} takes three braces))",
      "t.hbs:5:4: {{{contact.firstName}}} puts the CRM's text into the email unescaped (fix: write {{contact.firstName}}: values are escaped for HTML (only a layout's {{{body}}} takes three braces))",
      "t.hbs:6:4: {{{formatMoney}}} puts the CRM's text into the email unescaped (fix: write {{formatMoney}}: values are escaped for HTML (only a layout's {{{body}}} takes three braces))",
    ]);
    // A layout's body is the email's own HTML: three braces there are the rule.
    const withLayout = load({ 'layouts/frame.hbs': '<div>{{{body}}}</div>', 'l.hbs': '---\nsubject: "About {{reference}}"\nlayout: frame\n---\n<p>{{reference}}</p>' });
    expect(checkTemplates(withLayout, [use('l')])).toEqual([]);
  });

  it('lookup with a written key is read as the path it names: a misspelt key is an error, not a blank', () => {
    const templates = load({ 't.hbs': email('<p>[{{lookup opportunity "titel"}}]</p>\n<p>{{lookup opportunity "title"}} {{lookup this "reference"}}</p>') });
    expect(checkTemplates(templates, [use('t')]).map(formatProblem)).toEqual([
      't.hbs:4:26: unknown variable "opportunity.titel" (fix: did you mean "title"?)',
    ]);
  });

  it('a template no step uses is still read for unknown variables, internals and three braces', () => {
    const templates = load({
      'used.hbs': email('<p>{{reference}}</p>'),
      'orphan.hbs': email('<p>{{opportunity.titel}}</p>', 'hi {{refrence}}'),
      'orphan.de.hbs': email('<p>{{constructor}}</p>\n<p>{{{reference}}}</p>'),
    });
    expect(checkTemplates(templates, [use('used')])).toEqual([]);
    expect(unusedTemplateProblems(templates, [use('used')]).map(formatProblem)).toEqual([
      'orphan.hbs:2:16: unknown variable "refrence" (fix: did you mean "reference"?)',
      'orphan.hbs:4:6: unknown variable "opportunity.titel" (fix: did you mean "title"?)',
      'orphan.de.hbs:4:6: "constructor" reaches into JavaScript internals ("constructor"): not allowed (fix: remove it: templates read only the variables listed in the README)',
      "orphan.de.hbs:5:4: {{{reference}}} puts the CRM's text into the email unescaped (fix: write {{reference}}: values are escaped for HTML (only a layout's {{{body}}} takes three braces))",
    ]);
  });
});

describe('formatProblem', () => {
  it.each([
    [{ file: 'closing-soon.hbs', line: 12, column: 5, message: 'm' }, 'closing-soon.hbs:12:5: m'],
    [{ file: 'closing-soon.hbs', line: 12, message: 'm' }, 'closing-soon.hbs:12: m'],
    [{ file: 'closing-soon.hbs', line: 0, message: 'm' }, 'closing-soon.hbs: m'],
  ])('%j', (problem, expected) => {
    expect(formatProblem(problem)).toBe(expected);
  });
});

describe('the shipped templates/ folder', () => {
  const usages: TemplateUsage[] = [
    use('closing-soon', 'customer', 'closing-in-14-days'),
    use('closing-soon', 'customer', 'closing-in-7-days'),
    use('last-call', 'customer', 'closing-in-3-days'),
    use('proposal-follow-up', 'customer', 'proposal-follow-up'),
    use('owner-update-closing-date', 'owner', 'update-closing-date'),
  ];

  it('loads and passes the check for the five default steps', () => {
    const { templates, problems } = loadTemplates(SHIPPED);
    expect(problems).toEqual([]);
    expect(templates.names()).toEqual(['closing-soon', 'last-call', 'owner-update-closing-date', 'proposal-follow-up']);
    expect(checkTemplates(templates, usages)).toEqual([]);
  });

  it.each([
    ['closing-soon', 'Your request “Trip to the USA”: '],
    ['last-call', 'Your request “Trip to the USA”: '],
    ['proposal-follow-up', 'Your request “Trip to the USA”: '],
  ])('%s carries the title as the reference, with a visible unsubscribe link', (name, subjectStart) => {
    const r = loadTemplates(SHIPPED).templates.render(name, context(), EN);
    expect(r.subject.startsWith(subjectStart)).toBe(true);
    expect(r.html).toContain('“Trip to the USA”');
    expect(r.html).toContain('href="https://nudge.example.com/unsubscribe/tok"');
    expect(r.text).toContain('[https://nudge.example.com/unsubscribe/tok]');
    expect(r.text).not.toContain(r.preheader!);
  });

  it('picks the German variant for locale de (and de-AT), English otherwise', () => {
    const { templates } = loadTemplates(SHIPPED);
    const de = templates.render('closing-soon', context(), { locale: 'de', timeZone: 'Europe/Berlin' });
    expect(de.file).toBe('closing-soon.de.hbs');
    expect(de.subject).toBe('Ihre Anfrage „Trip to the USA“: Haben Sie alles für Ihre Entscheidung?');
    expect(de.html).toContain('12.000,50\u00a0€');
    expect(de.html).toContain('lang="de"');
    expect(templates.render('closing-soon', context(), { locale: 'de-AT', timeZone: 'Europe/Vienna' }).file).toBe('closing-soon.de.hbs');
    expect(templates.render('closing-soon', context(), { locale: 'fr', timeZone: 'Europe/Paris' }).file).toBe('closing-soon.hbs');
  });

  it.each(['closing-soon', 'last-call', 'proposal-follow-up'])('%s reads naturally without an amount', (name) => {
    const { templates } = loadTemplates(SHIPPED);
    for (const locale of ['en', 'de']) {
      const blank = templates.render(name, context({ amount: null }), { locale, timeZone: 'UTC' });
      const full = templates.render(name, context(), { locale, timeZone: 'UTC' });
      for (const text of [blank.html, blank.text, blank.subject]) expect(text).not.toMatch(/NaN|null|undefined|€/);
      // The HTML has cellpadding="0"; the words the customer reads must not show a zero amount.
      expect(blank.text).not.toMatch(/\b0\b/);
      expect(full.text).toMatch(/12[,.]000[,.]50/);
    }
  });

  it('the owner email works without a contact and shows the missed date', () => {
    const r = loadTemplates(SHIPPED).templates.render('owner-update-closing-date', ownerContext(), EN);
    expect(r.subject).toBe('Please update the closing date of “Trip to the USA”');
    expect(r.text).toContain('March 1, 2026');
    expect(r.text).toContain('Expected revenue: €6,000.25');
    expect(r.html).not.toContain('unsubscribe');
  });
});
