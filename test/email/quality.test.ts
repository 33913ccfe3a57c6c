/**
 * What reaches the inbox: CSS of `<style>` blocks inlined after the layout and before the plain
 * text, and the shipped layout's hidden preheader.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { templateFolders } from '../helpers/template-dir.ts';
import { loadTemplates, type TemplateContext, type Templates } from '../../src/email/templates.ts';

const SHIPPED = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../templates');
const EN = { locale: 'en', timeZone: 'UTC' };

const { load } = templateFolders('quality');

function context(amount: string | null = '12000.50'): TemplateContext {
  return {
    opportunity: {
      id: 7, title: 'Trip to the USA', amount, currency: 'EUR', closingDate: '2026-03-01',
      stage: { key: 'proposal', label: 'Proposal', probability: 50 }, expectedRevenue: amount && '6000.25',
    },
    contact: { firstName: 'Ada', lastName: 'Lovelace', email: 'ada@example.com', locale: 'en' },
    owner: { email: 'sam@example.com' },
    reference: 'Trip to the USA',
    unsubscribeUrl: 'https://nudge.example.com/unsubscribe/tok',
  };
}

describe('CSS in a <style> block of the layout', () => {
  const files = {
    'offer.hbs': '---\nsubject: "About {{reference}}"\nlayout: main\n---\n<p>Your request {{reference}}</p>\n<p class="small" style="margin:0">Small print</p>\n',
    'layouts/main.hbs': [
      '<html><head><style>',
      'p { color: red }',
      '.small { font-size: 12px }',
      '@media (max-width: 600px) { p { font-size: 18px } }',
      '</style></head><body>{{{body}}}</body></html>',
    ].join('\n'),
  };

  it('is inlined into the elements it matches, after the layout', () => {
    const r = load(files).render('offer', context(), EN);
    expect(r.html).toContain('<p style="color: red;">Your request Trip to the USA</p>');
    // Rules combine with what the element already says; its own style wins (it comes last).
    expect(r.html).toContain('<p class="small" style="color: red; font-size: 12px; margin: 0;">Small print</p>');
    // Rules that cannot be inlined stay, for the mail programs that read <style>.
    expect(r.html).toMatch(/<style>\s*@media \(max-width: 600px\) \{\s*p \{\s*font-size: 18px;\s*\}\s*\}\s*<\/style>/);
    expect(r.html).not.toContain('p { color: red }');
  });

  it('leaves the plain text free of CSS', () => {
    const r = load(files).render('offer', context(), EN);
    expect(r.text).toBe('Your request Trip to the USA\n\nSmall print');
  });

  it('HTML without a <style> block is sent exactly as rendered', () => {
    const body = '<p>Trip &amp; “friends”&nbsp;{{reference}}</p><br><img src="https://example.com/a.png" alt="">';
    const r = load({ 'plain.hbs': `---\nsubject: "About {{reference}}"\n---\n${body}` }).render('plain', context(), EN);
    expect(r.html).toBe('<p>Trip &amp; “friends”&nbsp;Trip to the USA</p><br><img src="https://example.com/a.png" alt="">');
  });

  it('a <link> stylesheet is not fetched or inlined', () => {
    const layout = '<html><head><link rel="stylesheet" href="https://127.0.0.1:9/never.css"><style>p { color: red }</style></head><body>{{{body}}}</body></html>';
    const r = load({ 'o.hbs': '---\nsubject: "About {{reference}}"\nlayout: l\n---\n<p>x</p>', 'layouts/l.hbs': layout }).render('o', context(), EN);
    expect(r.html).toContain('<link rel="stylesheet" href="https://127.0.0.1:9/never.css">');
    expect(r.html).toContain('<p style="color: red;">x</p>');
  });
});

describe('the shipped layout', () => {
  it('places the preheader first in the body, hidden, and leaves it out of the plain text', () => {
    const r = loadTemplates(SHIPPED).templates.render('closing-soon', context(), EN);
    expect(r.preheader).toBe('You plan to decide by March 1, 2026. Here is how we can help.');
    const body = r.html.slice(r.html.indexOf('<body'));
    const first = /^<body[^>]*>\s*<span class="preheader" style="([^"]*)">([^<]*)<\/span>/.exec(body);
    expect(first).not.toBeNull();
    expect(first![1]).toContain('display:none');
    expect(first![2]!.startsWith(r.preheader!)).toBe(true);
    expect(r.text.startsWith('Hello Ada,')).toBe(true);
    expect(r.text).not.toContain('decide by March 1, 2026. Here is how');
  });

  it.each([
    ['en', 'UTC', '€12,000.50', 'March 1, 2026'],
    ['de', 'Europe/Berlin', '12.000,50\u00a0€', '1. März 2026'],
  ])('formats money and dates for the recipient (%s)', (locale, timeZone, money, date) => {
    const r = loadTemplates(SHIPPED).templates.render('closing-soon', context(), { locale, timeZone });
    expect(r.text).toContain(money);
    expect(r.text).toContain(date);
  });

  it('a blank amount leaves the sentence out, not a 0', () => {
    const r = loadTemplates(SHIPPED).templates.render('closing-soon', context(null), EN);
    expect(r.text).not.toMatch(/budget|€|\b0\b/);
  });
});
