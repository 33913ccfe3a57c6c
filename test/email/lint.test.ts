/**
 * The rules `templates check` adds to "does it render" (src/email/lint.ts): subjects that name
 * the request, https links, images with alt text, locale variants; errors vs warnings, each
 * with `file:line:column: message (fix: hint)`.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { templateFolders } from '../helpers/template-dir.ts';
import { publicUrlWarning } from '../../src/email/lint.ts';
import {
  checkTemplates, formatProblem, loadTemplates, templateWarnings, type Templates, type TemplateUsage,
} from '../../src/email/templates.ts';

const SHIPPED = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../templates');

const { load } = templateFolders('lint');

const use = (template: string, audience: TemplateUsage['audience'] = 'customer'): TemplateUsage => ({ template, stepId: `step-${template}`, audience });
const errors = (t: Templates, usages: TemplateUsage[]) => checkTemplates(t, usages).map(formatProblem);
const warnings = (t: Templates, usages: TemplateUsage[]) => templateWarnings(t, usages).map(formatProblem);

describe('the subject of a customer email names the request', () => {
  it.each([
    ['{{reference}}', 'Your request {{reference}}'],
    ['{{opportunity.title}}', 'About {{opportunity.title}}'],
    ['{{@root.reference}}', 'About {{@root.reference}}'],
    ['{{reference}} inside {{#if}}', '{{#if opportunity.amount}}Offer{{/if}} for {{reference}}'],
  ])('%s is enough', (_, subject) => {
    const t = load({ 's.hbs': `---\nsubject: "${subject}"\n---\n<p>x</p>\n` });
    expect(errors(t, [use('s')])).toEqual([]);
  });

  it('a subject without it is an error, located at the subject', () => {
    const t = load({ 's.hbs': '---\nlayout: base\nsubject: "A special offer for you"\n---\n<p>{{reference}}</p>\n', 'layouts/base.hbs': '{{{body}}}' });
    expect(errors(t, [use('s')])).toEqual([
      "s.hbs:3:11: the subject of a customer email does not name the request (fix: put {{reference}}, the customer's own title for the request, in the subject)",
    ]);
    expect(warnings(t, [use('s')])).toEqual([]);
  });

  it('is checked in every locale variant', () => {
    const t = load({ 's.hbs': '---\nsubject: "About {{reference}}"\n---\nx', 's.de.hbs': '---\nsubject: Ein Angebot\n---\nx' });
    expect(errors(t, [use('s')])).toEqual([
      "s.de.hbs:2:10: the subject of a customer email does not name the request (fix: put {{reference}}, the customer's own title for the request, in the subject)",
    ]);
  });

  it('does not apply to emails to the owner', () => {
    const t = load({ 'o.hbs': '---\nsubject: Please update a closing date\n---\nx' });
    expect(errors(t, [use('o', 'owner')])).toEqual([]);
  });
});

describe('links', () => {
  const body = [
    '<p><a href="https://example.com/ok">ok</a> <a href="https://example.com/{{opportunity.id}}">ok</a></p>',
    '<p><a href="http://example.com/offer">offer</a></p>',
    '<p><a href="/relative">x</a> <a href="mailto:{{owner.email}}">m</a> <a href="#top">t</a> <a href="tel:+3212345678">c</a></p>',
    '<p><a href="{{unsubscribeUrl}}">u</a> <a href=\'{{opportunity.title}}\'>t</a></p>',
    '  <a class="b" HREF = "javascript:alert(1)" title="{{formatDate opportunity.closingDate style="short"}}">j</a>',
    '{{!-- <a href="http://in-a-comment.example">ignored</a> --}}<!-- <a href="http://html-comment.example"> -->',
    '<a href="">empty</a>',
  ].join('\n');

  it('that are not https are errors, with the place of the href', () => {
    const t = load({ 'l.hbs': `---\nsubject: "About {{reference}}"\n---\n${body}\n` });
    expect(errors(t, [use('l')])).toEqual([
      'l.hbs:5:7: link "http://example.com/offer" is not https (fix: write https://example.com/offer)',
      'l.hbs:6:7: link "/relative" is not an https:// address (fix: links in emails are absolute: https://..., mailto:, tel:, #anchor or {{unsubscribeUrl}})',
      'l.hbs:7:42: link "{{opportunity.title}}" takes its address from a variable (fix: write the address as https://...; only {{unsubscribeUrl}} may be a whole link)',
      'l.hbs:8:16: link "javascript:alert(1)" is not an https:// address (fix: links in emails are absolute: https://..., mailto:, tel:, #anchor or {{unsubscribeUrl}})',
      'l.hbs:10:4: empty link (fix: links in emails are absolute: https://..., mailto:, tel:, #anchor or {{unsubscribeUrl}})',
    ]);
  });

  it('are read in layouts and partials too, and named in their own files', () => {
    const t = load({
      'l.hbs': '---\nsubject: "About {{reference}}"\nlayout: main\n---\n<p>x</p>\n{{> sign}}',
      'layouts/main.hbs': '<html><head>\n<link rel="stylesheet" href="http://fonts.example/css">\n</head><body>{{{body}}}</body></html>',
      'partials/sign.hbs': '<p>\n  <a href="http://example.com">us</a></p>',
      'partials/unused.hbs': '<a href="http://never-included.example">x</a>',
    });
    expect(errors(t, [use('l', 'owner')])).toEqual([
      'partials/sign.hbs:2:6: link "http://example.com" is not https (fix: write https://example.com)',
      'layouts/main.hbs:2:24: link "http://fonts.example/css" is not https (fix: write https://fonts.example/css)',
    ]);
  });
});

describe('images', () => {
  it('without alt are warnings: printed, not refused', () => {
    const t = load({
      'i.hbs': '---\nsubject: "About {{reference}}"\n---\n<p>\n  <img src="https://example.com/logo.png" width="120"></p>\n<IMG SRC="https://example.com/a.png">\n<img src="https://example.com/spacer.gif" alt="">\n<img alt="Our team" src="https://example.com/team.jpg">\n',
    });
    expect(errors(t, [use('i')])).toEqual([]);
    expect(warnings(t, [use('i')])).toEqual([
      'i.hbs:5:3: warning: <img> without alt text: many mail programs block images, and screen readers read alt (fix: add alt="what the image shows" (alt="" for a decorative image))',
      'i.hbs:6:1: warning: <img> without alt text: many mail programs block images, and screen readers read alt (fix: add alt="what the image shows" (alt="" for a decorative image))',
    ]);
  });
});

describe('locale variants', () => {
  const email = (subject: string) => `---\nsubject: "${subject} {{reference}}"\n---\nx\n`;

  it('a locale some customer templates have and another lacks is a warning on the one that lacks it', () => {
    const t = load({
      'a.hbs': email('A'), 'a.de.hbs': email('A de'), 'a.fr-CA.hbs': email('A fr-CA'),
      'b.hbs': email('B'), 'b.fr.hbs': email('B fr'),
      'c.hbs': email('C'), 'c.de-AT.hbs': email('C de-AT'),
      'owner.hbs': email('O'),
      'unused.hbs': email('U'), 'unused.it.hbs': email('U it'),
    });
    const usages = [use('a'), use('b'), use('c'), use('owner', 'owner')];
    expect(errors(t, usages)).toEqual([]);
    // b.fr.hbs serves fr-CA (a region falls back to its language); c.de-AT.hbs does not serve de.
    expect(warnings(t, usages)).toEqual([
      'a.hbs:1:1: warning: no French variant: contacts with locale "fr" get a.hbs, though b.fr.hbs exists (fix: add a.fr.hbs)',
      'b.hbs:1:1: warning: no German variant: contacts with locale "de" get b.hbs, though a.de.hbs exists (fix: add b.de.hbs)',
      'b.hbs:1:1: warning: no Austrian German variant: contacts with locale "de-at" get b.hbs, though c.de-AT.hbs exists (fix: add b.de-at.hbs)',
      'c.hbs:1:1: warning: no German variant: contacts with locale "de" get c.hbs, though a.de.hbs exists (fix: add c.de.hbs)',
      'c.hbs:1:1: warning: no French variant: contacts with locale "fr" get c.hbs, though b.fr.hbs exists (fix: add c.fr.hbs)',
      'c.hbs:1:1: warning: no Canadian French variant: contacts with locale "fr-ca" get c.hbs, though a.fr-CA.hbs exists (fix: add c.fr-ca.hbs)',
    ]);
  });
});

describe('the shipped templates/ folder', () => {
  it('passes every rule without an error or a warning', () => {
    const { templates, problems } = loadTemplates(SHIPPED);
    expect(problems).toEqual([]);
    const usages = [use('closing-soon'), use('last-call'), use('proposal-follow-up'), use('owner-update-closing-date', 'owner')];
    expect(errors(templates, usages)).toEqual([]);
    expect(warnings(templates, usages)).toEqual([]);
  });
});

describe('PUBLIC_URL', () => {
  it.each([
    ['https://nudge.example.com', null],
    ['HTTPS://nudge.example.com/', null],
    ['http://nudge.example.com', /^warning: PUBLIC_URL is http:\/\/nudge\.example\.com: List-Unsubscribe and the unsubscribe link are not https.*\(fix: set PUBLIC_URL to the https:\/\/ address/],
    [undefined, /^warning: PUBLIC_URL is not set \(unsubscribe links use http:\/\/localhost:3000\)/],
  ])('%s', (url, expected) => {
    const warning = publicUrlWarning(url);
    if (expected === null) expect(warning).toBeNull();
    else expect(warning).toMatch(expected);
  });
});
