/**
 * The templates folder: `<name>.hbs` and `<name>.<locale>.hbs` emails, `layouts/` and `partials/`.
 * `loadTemplates` compiles everything once and never throws for a bad file; `checkTemplates` is
 * what `nudge templates check` adds: every used template rendered against sample recipients and
 * read for misspelt variables in branches a sample does not take.
 */
import fs from 'node:fs';
import path from 'node:path';
import { DEFAULT_LIMITS, type RenderLimits } from './budget.ts';
import { createEnvironment, knownHelpers, staticProblems, type HandlebarsEnv, type TemplateSet } from './helpers.ts';
import { lintTemplates, type Audience } from './lint.ts';
import { formatProblem, isWarning, TemplateError, type TemplateProblem } from './problems.ts';
import {
  compilePart, compileTemplateFile, guardedDelegate, renderEmail,
  type CompiledPart, type CompiledTemplate, type RenderedEmail, type RenderTarget, type TemplateContext,
} from './render.ts';

export { formatProblem, isWarning, TemplateError };
export type { RenderedEmail, RenderLimits, RenderTarget, TemplateContext, TemplateProblem };

export interface Templates {
  /** The templates folder, as given. */
  readonly dir: string;
  /** The base file `<name>.hbs` exists and compiled. */
  has(name: string): boolean;
  /** Base template names, sorted, compiled or not (not layouts, partials or locale variants). */
  names(): string[];
  /** Picks `<name>.<locale>.hbs` by the recipient's locale, else the base file. Throws TemplateError. */
  render(name: string, ctx: TemplateContext, target: RenderTarget): RenderedEmail;
}

export interface TemplateUsage {
  template: string;
  stepId: string;
  audience: 'customer' | 'owner';
}

/** One template file, compiled or with the problem that stopped it. */
interface Variant {
  file: string;
  /** Lower-case locale tag; null for the base file. */
  locale: string | null;
  template: CompiledTemplate | null;
  problem: TemplateProblem | null;
}

interface Loaded extends TemplateSet {
  hb: HandlebarsEnv;
  limits: RenderLimits;
  bases: Map<string, Variant>;
  /** name -> lower-case locale -> variant */
  variants: Map<string, Map<string, Variant>>;
}

/** Lets `checkTemplates` reach the compiled files behind the public interface. */
const LOADED = new WeakMap<Templates, Loaded>();

const VARIANT_NAME = /^(.+)\.([A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*)$/;

export interface LoadOptions {
  /** Limits of each render (size, time, loops, partial depth). @defaultValue DEFAULT_LIMITS */
  limits?: Partial<RenderLimits>;
}

export function loadTemplates(dir: string, options: LoadOptions = {}): { templates: Templates; problems: TemplateProblem[] } {
  const hb = createEnvironment();
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const loaded: Loaded = { hb, limits, bases: new Map(), variants: new Map(), layouts: new Map(), partials: new Map(), helpers: knownHelpers(hb) };
  const problems: TemplateProblem[] = [];
  const templates = new LoadedTemplates(dir, loaded);
  LOADED.set(templates, loaded);
  let files: string[];
  try {
    files = hbsFiles(dir);
  } catch {
    problems.push({ file: dir, line: 0, message: 'the templates folder does not exist or cannot be read', hint: 'set NUDGE_TEMPLATES_DIR to the folder that holds the .hbs files' });
    return { templates, problems };
  }
  loadParts(hb, dir, 'layouts', loaded.layouts, problems);
  loadParts(hb, dir, 'partials', loaded.partials, problems);
  for (const [name, part] of loaded.partials) {
    // A broken partial fails with its own problem, not with "could not be found".
    hb.registerPartial(name, 'message' in part ? () => { throw new TemplateError(part); } : guardedDelegate(part));
  }
  for (const file of files) addTemplate(loaded, file, fs.readFileSync(path.join(dir, file), 'utf8'), problems);
  problems.push(...orphanVariants(loaded), ...missingLayouts(loaded));
  return { templates, problems };
}

function hbsFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith('.hbs'))
    .map((e) => e.name)
    .sort();
}

/** Layouts and partials: plain Handlebars, no front-matter, named after their file. */
function loadParts(hb: HandlebarsEnv, dir: string, sub: string, into: Map<string, CompiledPart | TemplateProblem>, problems: TemplateProblem[]): void {
  let files: string[];
  try {
    files = hbsFiles(path.join(dir, sub));
  } catch {
    return; // both folders are optional
  }
  for (const name of files) {
    const file = `${sub}/${name}`;
    const text = fs.readFileSync(path.join(dir, sub, name), 'utf8').replace(/^\uFEFF/, '').replace(/\r\n?/g, '\n');
    const part = compilePart(hb, text, { file, line: 1, column: 0 });
    if ('message' in part) problems.push(part);
    into.set(name.slice(0, -'.hbs'.length), part);
  }
}

function addTemplate(loaded: Loaded, file: string, text: string, problems: TemplateProblem[]): void {
  const stem = file.slice(0, -'.hbs'.length);
  const m = VARIANT_NAME.exec(stem);
  const { template, problems: found } = compileTemplateFile(loaded.hb, file, text);
  problems.push(...found);
  const variant: Variant = { file, locale: m ? normaliseLocale(m[2]!) : null, template, problem: found[0] ?? null };
  if (!m) {
    loaded.bases.set(stem, variant);
    return;
  }
  const byLocale = loaded.variants.get(m[1]!) ?? new Map<string, Variant>();
  byLocale.set(variant.locale!, variant);
  loaded.variants.set(m[1]!, byLocale);
}

function normaliseLocale(locale: string): string {
  return locale.trim().replace(/_/g, '-').toLowerCase();
}

function orphanVariants(loaded: Loaded): TemplateProblem[] {
  return [...loaded.variants].filter(([name]) => !loaded.bases.has(name)).flatMap(([name, byLocale]) =>
    [...byLocale.values()].map((v) => ({
      file: v.file, line: 0, message: `a locale variant of "${name}", but ${name}.hbs does not exist`,
      hint: `add ${name}.hbs (for every other locale) or rename this file`,
    })));
}

function missingLayouts(loaded: Loaded): TemplateProblem[] {
  return allVariants(loaded).flatMap((v) => {
    const layout = v.template?.layout;
    if (!layout || loaded.layouts.has(layout.name)) return [];
    return [missingLayout(v.file, layout)];
  });
}

function missingLayout(file: string, layout: { name: string; line: number }): TemplateProblem {
  return { file, line: layout.line, message: `layout "${layout.name}" not found`, hint: `create layouts/${layout.name}.hbs or correct the layout name` };
}

function allVariants(loaded: Loaded, name?: string): Variant[] {
  const names = name === undefined ? [...loaded.bases.keys(), ...loaded.variants.keys()] : [name];
  return [...new Set(names)].flatMap((n) => [
    ...(loaded.bases.has(n) ? [loaded.bases.get(n)!] : []),
    ...(loaded.variants.get(n)?.values() ?? []),
  ]);
}

class LoadedTemplates implements Templates {
  constructor(readonly dir: string, private readonly loaded: Loaded) {}

  has(name: string): boolean {
    return Boolean(this.loaded.bases.get(name)?.template);
  }

  names(): string[] {
    return [...this.loaded.bases.keys()].sort();
  }

  render(name: string, ctx: TemplateContext, target: RenderTarget): RenderedEmail {
    return renderVariant(this.loaded, pickVariant(this.loaded, name, target.locale), ctx, target);
  }
}

/** `de-AT` tries `name.de-AT.hbs`, then `name.de.hbs`, then `name.hbs` (locales case-insensitive). */
function pickVariant(loaded: Loaded, name: string, locale: string): Variant {
  const byLocale = loaded.variants.get(name);
  for (let tag = normaliseLocale(locale); byLocale && tag; tag = tag.includes('-') ? tag.slice(0, tag.lastIndexOf('-')) : '') {
    const variant = byLocale.get(tag);
    if (variant) return variant;
  }
  const base = loaded.bases.get(name);
  if (!base) throw new TemplateError({ file: `${name}.hbs`, line: 0, message: `template "${name}" not found`, hint: `create ${name}.hbs` });
  return base;
}

function renderVariant(loaded: Loaded, variant: Variant, ctx: TemplateContext, target: RenderTarget): RenderedEmail {
  const t = variant.template;
  if (!t) throw new TemplateError(variant.problem ?? { file: variant.file, line: 0, message: 'the template did not compile' });
  const layout = t.layout ? loaded.layouts.get(t.layout.name) : null;
  if (layout === undefined) throw new TemplateError(missingLayout(t.file, t.layout!));
  if (layout && 'message' in layout) throw new TemplateError(layout);
  return renderEmail(t, layout, ctx, target, loaded.limits);
}

/**
 * The errors of every used template and each locale variant: unknown variables, helpers or
 * partials anywhere (taken branch or not), whatever a render against sample recipients of the
 * step's audience, with and without an amount, throws, and the error rules of lint.ts (subject,
 * links). Warnings are left to `templateWarnings`: an error refuses the content, a warning not.
 */
export function checkTemplates(templates: Templates, usages: TemplateUsage[]): TemplateProblem[] {
  const loaded = LOADED.get(templates);
  const problems: TemplateProblem[] = [];
  const done = new Set<string>();
  for (const usage of usages) {
    if (!templates.has(usage.template)) {
      // A base file that exists but failed to load is already a problem of loadTemplates.
      if (!loaded?.bases.has(usage.template)) problems.push(missingTemplate(usage));
      continue;
    }
    const key = `${usage.template}|${usage.audience}`;
    if (done.has(key)) continue;
    done.add(key);
    if (!loaded) {
      problems.push(...renderProblems((ctx) => templates.render(usage.template, ctx, { locale: 'en', timeZone: 'UTC' }), usage.audience, 'en'));
      continue;
    }
    for (const variant of allVariants(loaded, usage.template)) {
      if (!variant.template) continue;
      problems.push(...staticProblems(loaded, variant.template));
      const locale = variant.locale ?? 'en';
      problems.push(...renderProblems((ctx) => renderVariant(loaded, variant, ctx, { locale, timeZone: 'UTC' }), usage.audience, locale));
    }
  }
  if (loaded) problems.push(...lint(loaded, usages).filter((p) => !isWarning(p)));
  return dedupe(problems);
}

/**
 * The templates no step uses, read for what does not depend on a step: unknown variables, helpers
 * and partials, JavaScript internals, three braces (`staticProblems`). A syntax error is already a
 * problem of `loadTemplates`; the rules that depend on who receives the email wait for a step.
 */
export function unusedTemplateProblems(templates: Templates, usages: TemplateUsage[]): TemplateProblem[] {
  const loaded = LOADED.get(templates);
  if (!loaded) return [];
  const used = new Set(usages.map((u) => u.template));
  const problems = [...loaded.bases.keys()].filter((name) => !used.has(name))
    .flatMap((name) => allVariants(loaded, name).flatMap((v) => (v.template ? staticProblems(loaded, v.template) : [])));
  return dedupe(problems);
}

/** What `templates check` and `send-test` print as warnings: images without alt, missing locale variants. */
export function templateWarnings(templates: Templates, usages: TemplateUsage[]): TemplateProblem[] {
  const loaded = LOADED.get(templates);
  return loaded ? dedupe(lint(loaded, usages).filter(isWarning)) : [];
}

function lint(loaded: Loaded, usages: TemplateUsage[]): TemplateProblem[] {
  const audiences = new Map<string, Set<Audience>>();
  for (const u of usages) {
    if (!loaded.bases.get(u.template)?.template) continue;
    audiences.set(u.template, (audiences.get(u.template) ?? new Set()).add(u.audience));
  }
  const used = [...audiences].map(([name, set]) => ({
    name, audiences: set,
    variants: allVariants(loaded, name).flatMap((v) => (v.template ? [{ file: v.file, locale: v.locale, template: v.template }] : [])),
  }));
  return lintTemplates({ used, layouts: loaded.layouts, partials: loaded.partials });
}

function missingTemplate(usage: TemplateUsage): TemplateProblem {
  return {
    file: `${usage.template}.hbs`, line: 0, message: `step "${usage.stepId}" uses template "${usage.template}", but ${usage.template}.hbs does not exist`,
    hint: `create ${usage.template}.hbs or correct "template:" in the journey file`,
  };
}

function renderProblems(render: (ctx: TemplateContext) => unknown, audience: TemplateUsage['audience'], locale: string): TemplateProblem[] {
  const problems: TemplateProblem[] = [];
  for (const ctx of sampleContexts(audience, locale)) {
    try {
      render(ctx);
    } catch (error) {
      if (!(error instanceof TemplateError)) throw error;
      problems.push(error.problem);
    }
  }
  return problems;
}

/** A recipient with every field filled, and one with every field that may be blank left blank. */
function sampleContexts(audience: TemplateUsage['audience'], locale: string): TemplateContext[] {
  const stage = { key: 'proposal', label: 'Proposal', probability: 50 };
  const full: TemplateContext = {
    opportunity: { id: 1, title: 'Trip to the USA', amount: '12000.50', currency: 'EUR', closingDate: '2026-03-01', stage, expectedRevenue: '6000.25' },
    contact: { firstName: 'Alex', lastName: 'Sample', email: 'alex@example.com', locale },
    owner: { email: 'owner@example.com' },
    reference: 'Trip to the USA',
    unsubscribeUrl: 'https://nudge.example.com/unsubscribe/sample',
  };
  const blank: TemplateContext = {
    ...full,
    opportunity: { ...full.opportunity, amount: null, closingDate: null, expectedRevenue: null },
    contact: { firstName: null, lastName: null, email: 'alex@example.com', locale },
    owner: { email: null },
  };
  if (audience === 'customer') return [full, blank];
  return [full, blank].map((ctx) => ({ ...ctx, contact: null, unsubscribeUrl: null }));
}

/**
 * The same place reported by the static check and by a render is one error: the first wins.
 * Warnings are only ever found once per message (several may share a place).
 */
function dedupe(problems: TemplateProblem[]): TemplateProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const key = p.column && !isWarning(p) ? `${p.file}:${p.line}:${p.column}` : formatProblem(p);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
