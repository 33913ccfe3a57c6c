/**
 * What `nudge templates check` adds to "does it render": rules for emails that customers trust.
 *
 * Errors (refused like a syntax error: `templates check` exits 1, `start`/`tick` refuse):
 * - a customer email whose subject does not name the request (`{{reference}}` or
 *   `{{opportunity.title}}`): the customer must recognise what the email is about;
 * - a link (`href`) that is not `https://`: allowed besides are `{{unsubscribeUrl}}`,
 *   `mailto:`, `tel:` and `#anchors`. A link whose address comes from another variable is
 *   refused too: CRM data must not decide where a customer's click goes.
 * Warnings (printed, exit code 0): an `<img>` without `alt`, and a locale that some customer
 * templates have (`closing-soon.de.hbs`) but another customer template does not.
 */
import { positionOf, scanTags } from './html-scan.ts';
import { findNode, pathName, problemAt, type TemplateProblem } from './problems.ts';
import type { CompiledPart, CompiledTemplate } from './render.ts';

export type Audience = 'customer' | 'owner';

export interface LintVariant {
  file: string;
  /** Lower-case locale tag; null for the base file. */
  locale: string | null;
  template: CompiledTemplate;
}

/** What the rules read: each template steps use, with its variants, and the shared parts. */
export interface LintInput {
  used: { name: string; audiences: ReadonlySet<Audience>; variants: LintVariant[] }[];
  layouts: ReadonlyMap<string, CompiledPart | TemplateProblem>;
  partials: ReadonlyMap<string, CompiledPart | TemplateProblem>;
}

export function lintTemplates(input: LintInput): TemplateProblem[] {
  const problems: TemplateProblem[] = [];
  const parts = new Set<CompiledPart>();
  for (const { audiences, variants } of input.used) {
    for (const v of variants) {
      if (audiences.has('customer')) problems.push(...subjectProblems(v.template));
      const layout = v.template.layout ? input.layouts.get(v.template.layout.name) : undefined;
      for (const part of [v.template.body, ...(layout && !('message' in layout) ? [layout] : [])]) collectParts(part, input.partials, parts);
    }
  }
  for (const part of parts) problems.push(...htmlProblems(part));
  problems.push(...missingLocales(input.used.filter((u) => u.audiences.has('customer'))));
  return problems;
}

/** `part` and every partial it includes by name, directly or through other partials. */
function collectParts(part: CompiledPart, partials: LintInput['partials'], into: Set<CompiledPart>): void {
  if (into.has(part)) return;
  into.add(part);
  findNode(part.ast, (n) => {
    if (n.type !== 'PartialStatement' && n.type !== 'PartialBlockStatement') return false;
    const name = pathName((n as hbs.AST.PartialStatement).name);
    const included = name === null ? undefined : partials.get(name);
    if (included && !('message' in included)) collectParts(included, partials, into);
    return false;
  });
}

const REFERENCES = new Set(['reference', 'opportunity.title']);

function subjectProblems(t: CompiledTemplate): TemplateProblem[] {
  const named = findNode(t.subject.ast, (n) => {
    const p = n as hbs.AST.PathExpression;
    return n.type === 'PathExpression' && p.depth === 0 && REFERENCES.has((p.data && p.parts[0] === 'root' ? p.parts.slice(1) : p.data ? [] : p.parts).join('.'));
  });
  if (named) return [];
  return [{
    file: t.file, line: t.subject.place.line, column: t.subject.place.column + 1,
    message: 'the subject of a customer email does not name the request',
    hint: "put {{reference}}, the customer's own title for the request, in the subject",
  }];
}

/** Links and images of one part, located in its file. */
export function htmlProblems(part: CompiledPart): TemplateProblem[] {
  const problems: TemplateProblem[] = [];
  for (const tag of scanTags(part.source)) {
    for (const attribute of tag.attributes) {
      if (attribute.name !== 'href' || attribute.value === null) continue;
      const wrong = hrefProblem(attribute.value);
      if (!wrong) continue;
      const at = positionOf(part.source, attribute.offset);
      problems.push(problemAt(part.place, at.line, at.column, wrong.message, wrong.hint));
    }
    if (tag.name === 'img' && !tag.attributes.some((a) => a.name === 'alt')) {
      const at = positionOf(part.source, tag.offset);
      problems.push({
        ...problemAt(part.place, at.line, at.column, '<img> without alt text: many mail programs block images, and screen readers read alt', 'add alt="what the image shows" (alt="" for a decorative image)'),
        severity: 'warning',
      });
    }
  }
  return problems;
}

const UNSUBSCRIBE = /^\{\{\{?~?\s*(@root\.)?unsubscribeUrl\s*~?\}\}\}?/;
const SAFE = /^(https:\/\/|mailto:|tel:|#)/i;

function hrefProblem(raw: string): { message: string; hint: string } | null {
  const value = raw.trim();
  if (UNSUBSCRIBE.test(value) || SAFE.test(value)) return null;
  const shown = value.length > 60 ? `${value.slice(0, 57)}...` : value;
  if (value.startsWith('{{')) {
    return { message: `link "${shown}" takes its address from a variable`, hint: 'write the address as https://...; only {{unsubscribeUrl}} may be a whole link' };
  }
  if (/^http:/i.test(value)) return { message: `link "${shown}" is not https`, hint: `write https:${value.slice('http:'.length)}` };
  return {
    message: value === '' ? 'empty link' : `link "${shown}" is not an https:// address`,
    hint: 'links in emails are absolute: https://..., mailto:, tel:, #anchor or {{unsubscribeUrl}}',
  };
}

/** For each locale some used customer template has, every other one should have it too. */
function missingLocales(used: LintInput['used']): TemplateProblem[] {
  const example = new Map<string, string>();
  for (const u of used) for (const v of u.variants) if (v.locale && !example.has(v.locale)) example.set(v.locale, v.file);
  const problems: TemplateProblem[] = [];
  for (const u of [...used].sort((a, b) => a.name.localeCompare(b.name))) {
    const has = u.variants.flatMap((v) => (v.locale ? [v.locale] : []));
    const base = u.variants.find((v) => v.locale === null);
    if (!base) continue;
    for (const [locale, file] of [...example].sort(([a], [b]) => a.localeCompare(b))) {
      // `name.de.hbs` also serves de-AT: `pickVariant` falls back from a region to its language.
      if (has.some((l) => locale === l || locale.startsWith(`${l}-`))) continue;
      problems.push({
        file: base.file, line: 1, column: 1, severity: 'warning',
        message: `no ${languageName(locale)} variant: contacts with locale "${locale}" get ${base.file}, though ${file} exists`,
        hint: `add ${u.name}.${locale}.hbs`,
      });
    }
  }
  return problems;
}

function languageName(locale: string): string {
  try {
    return new Intl.DisplayNames(['en'], { type: 'language' }).of(locale) ?? `"${locale}"`;
  } catch {
    return `"${locale}"`;
  }
}

/**
 * `List-Unsubscribe` and the footer link are built under PUBLIC_URL: mail programs offer their
 * one-click unsubscribe only for https, and the link carries a token. Null when it is https.
 */
export function publicUrlWarning(publicUrl: string | null | undefined, port = '3000'): string | null {
  const url = publicUrl?.trim() || null;
  if (url && /^https:\/\//i.test(url)) return null;
  const what = url ? `PUBLIC_URL is ${url}` : `PUBLIC_URL is not set (unsubscribe links use http://localhost:${port})`;
  return `warning: ${what}: List-Unsubscribe and the unsubscribe link are not https, which mail programs require for one-click unsubscribe (fix: set PUBLIC_URL to the https:// address customers reach Nudge at)`;
}
