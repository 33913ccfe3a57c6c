/**
 * One template file, from text to email: front-matter, compiled parts, and a render that turns
 * every Handlebars failure into a `TemplateProblem` naming the file and the line in that file.
 */
import { createRequire } from 'node:module';
import Handlebars from 'handlebars';
import { compile } from 'html-to-text';
import type Juice from 'juice/client';
import { LineCounter, parseDocument, Scalar, isMap, isScalar } from 'yaml';
import { checkHtmlSize, DEFAULT_LIMITS, withBudget, type RenderLimits } from './budget.ts';
import { plainHeaderText, type HandlebarsEnv, type RenderData } from './helpers.ts';
import { problemFrom, TemplateError, unclosedBlockProblem, type SourcePlace, type TemplateProblem } from './problems.ts';

export { formatProblem, TemplateError, type SourcePlace, type TemplateProblem } from './problems.ts';

/** What a template sees. Owner steps have `contact: null` and `unsubscribeUrl: null`. */
export interface TemplateContext {
  opportunity: {
    id: number; title: string; amount: string | null; currency: string;
    /** `YYYY-MM-DD`, or null */
    closingDate: string | null;
    stage: { key: string; label: string; probability: number };
    /** Exact decimal, e.g. `"6000.00"`, or null when the amount is blank. */
    expectedRevenue: string | null;
  };
  contact: { firstName: string | null; lastName: string | null; email: string | null; locale: string } | null;
  owner: { email: string | null };
  /** The opportunity's title: the customer's reference for their request. */
  reference: string;
  unsubscribeUrl: string | null;
}

/** The recipient: picks the locale variant and drives `formatMoney`/`formatDate`. */
export interface RenderTarget {
  /** BCP 47 tag, e.g. `de` or `en-GB`. */
  locale: string;
  /** IANA zone name. */
  timeZone: string;
}

export interface RenderedEmail {
  /** Plain text, one line: no HTML escaping, no control characters. */
  subject: string;
  preheader: string | null;
  html: string;
  /** Generated from `html`, wrapped at 78 columns, links as `text [href]`. */
  text: string;
  /** The template file actually used, relative to the templates folder (`closing-soon.de.hbs`). */
  file: string;
}

/** A compiled piece of Handlebars: a body, a subject, a preheader, a layout or a partial. */
export interface CompiledPart {
  place: SourcePlace;
  /** The Handlebars text as written (for reading its HTML: links, images). */
  source: string;
  ast: hbs.AST.Program;
  render: Handlebars.TemplateDelegate;
}

export interface CompiledTemplate {
  file: string;
  subject: CompiledPart;
  preheader: CompiledPart | null;
  /** Layout name from the front-matter, and the line it was given on. */
  layout: { name: string; line: number } | null;
  body: CompiledPart;
}

/** Parses now so syntax errors surface at load; the delegate compiles once, on first use. */
export function compilePart(hb: HandlebarsEnv, source: string, place: SourcePlace, plain = false): CompiledPart | TemplateProblem {
  try {
    const ast = hb.parse(source);
    return { place, source, ast, render: hb.compile(source, { strict: true, noEscape: plain }) };
  } catch (error) {
    return unclosedBlockProblem(error, source, place) ?? problemFrom(error, { place, ast: null });
  }
}

const FRONT_MATTER_KEYS = ['subject', 'preheader', 'layout'];

/** A template file: front-matter between `---` lines, then the HTML body. */
export function compileTemplateFile(hb: HandlebarsEnv, file: string, raw: string): { template: CompiledTemplate | null; problems: TemplateProblem[] } {
  const lines = raw.replace(/^\uFEFF/, '').replace(/\r\n?/g, '\n').split('\n');
  const close = lines.findIndex((l, i) => i > 0 && l.trimEnd() === '---');
  if (lines[0]?.trimEnd() !== '---' || close < 0) {
    const problem = lines[0]?.trimEnd() !== '---'
      ? { message: 'a template starts with front-matter', hint: "begin the file with a '---' line, 'subject: ...', and a closing '---' line" }
      : { message: "the front-matter opened on line 1 is never closed with a '---' line", hint: "add a '---' line between the front-matter and the HTML" };
    return { template: null, problems: [{ file, line: 1, ...problem }] };
  }
  const { fields, problems } = readFrontMatter(file, lines.slice(1, close).join('\n'));
  const compiled = (key: 'subject' | 'preheader', plain: boolean) => {
    const field = fields[key];
    if (!field) return null;
    const part = compilePart(hb, field.text, field.place, plain);
    if ('message' in part) problems.push(part);
    return 'message' in part ? null : part;
  };
  const subject = compiled('subject', true);
  const preheader = compiled('preheader', true);
  const body = compilePart(hb, lines.slice(close + 1).join('\n'), { file, line: close + 2, column: 0 });
  if ('message' in body) problems.push(body);
  if (problems.length || !subject || 'message' in body) return { template: null, problems };
  return { template: { file, subject, preheader, layout: fields.layout ?? null, body }, problems };
}

interface FrontMatter {
  subject?: { text: string; place: SourcePlace };
  preheader?: { text: string; place: SourcePlace };
  layout?: { name: string; line: number };
}

function readFrontMatter(file: string, yamlText: string): { fields: FrontMatter; problems: TemplateProblem[] } {
  const counter = new LineCounter();
  const doc = parseDocument(yamlText, { lineCounter: counter });
  // The YAML starts on the file's line 2, after the opening '---'.
  const at = (offset: number) => { const p = counter.linePos(offset); return { line: p.line + 1, col: p.col }; };
  const problems: TemplateProblem[] = doc.errors.map((e) => ({
    file, line: (e.linePos?.[0].line ?? 0) + 1, column: e.linePos?.[0].col,
    message: `front-matter: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`,
    hint: 'write one "key: value" per line, in double quotes when the value holds a colon',
  }));
  const fields: FrontMatter = {};
  if (problems.length) return { fields, problems };
  if (!isMap(doc.contents)) return { fields, problems: [{ file, line: 2, message: 'front-matter: expected "key: value" lines', hint: 'write subject: ..., and optionally preheader: ... and layout: ...' }] };
  for (const pair of doc.contents.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : '?';
    const keyAt = at(isScalar(pair.key) ? pair.key.range?.[0] ?? 0 : 0);
    const value = pair.value;
    if (!FRONT_MATTER_KEYS.includes(key)) {
      problems.push({ file, line: keyAt.line, column: keyAt.col, message: `unknown front-matter key "${key}"`, hint: `use one of ${FRONT_MATTER_KEYS.join(', ')}` });
    } else if (!isScalar(value) || value.value === null || !['string', 'number'].includes(typeof value.value) || String(value.value).trim() === '') {
      problems.push({ file, line: keyAt.line, message: `front-matter: ${key} must be text`, hint: `write ${key}: "..." on one line` });
    } else if (key === 'layout') {
      const name = String(value.value).trim();
      if (/^[\w-]+$/.test(name)) fields.layout = { name, line: keyAt.line };
      else problems.push({ file, line: keyAt.line, message: `front-matter: layout "${name}" is not a layout name`, hint: 'name a file of layouts/ without .hbs, e.g. layout: base' });
    } else {
      fields[key as 'subject' | 'preheader'] = { text: String(value.value), place: valuePlace(file, value, at) };
    }
  }
  if (!doc.contents.items.some((pair) => isScalar(pair.key) && pair.key.value === 'subject')) problems.push({ file, line: 1, message: 'the front-matter has no subject', hint: 'add subject: "... {{reference}} ..."' });
  return { fields, problems };
}

/** Where a scalar's text starts, so a Handlebars position inside a subject maps to the file. */
function valuePlace(file: string, value: Scalar, at: (offset: number) => { line: number; col: number }): SourcePlace {
  const start = at(value.range?.[0] ?? 0);
  if (value.type === Scalar.BLOCK_LITERAL || value.type === Scalar.BLOCK_FOLDED) return { file, line: start.line + 1, column: 0 };
  const quoted = value.type === Scalar.QUOTE_DOUBLE || value.type === Scalar.QUOTE_SINGLE;
  return { file, line: start.line, column: start.col - 1 + (quoted ? 1 : 0) };
}

/**
 * The context's texts without control characters (tab, line feed and carriage return kept): a
 * title typed with a BEL or a NUL is data from the CRM, and HTML and plain text have no place for
 * them. The subject's stricter cleaning (`plainHeaderText`) comes after.
 */
function printable<T>(value: T): T {
  if (typeof value === 'string') return value.replace(CONTROL, '') as T;
  if (Array.isArray(value)) return value.map(printable) as T;
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, printable(v)])) as T;
  }
  return value;
}

const CONTROL = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]/g;

/** Runtime options of every render: prototype access stays off whatever Handlebars' defaults. */
function runtimeOptions(target: RenderTarget): Handlebars.RuntimeOptions {
  const data: RenderData = { locale: target.locale, timeZone: target.timeZone };
  return { data, allowProtoPropertiesByDefault: false, allowProtoMethodsByDefault: false };
}

/** Renders one part; any failure becomes a TemplateError located in that part's file. */
export function runPart(part: CompiledPart, context: unknown, options: Handlebars.RuntimeOptions): string {
  try {
    return part.render(context, options);
  } catch (error) {
    if (error instanceof TemplateError) throw error;
    throw new TemplateError(problemFrom(error, part));
  }
}

/** The delegate registered for a partial: errors inside it name the partial's file. */
export function guardedDelegate(part: CompiledPart): Handlebars.TemplateDelegate {
  return (context, options) => runPart(part, context, options ?? {});
}

/**
 * Subject and preheader as header-safe text; body; layout around it; then the CSS of `<style>`
 * blocks inlined (juice), and the plain text from the final HTML. The whole render runs under
 * `limits` (see budget.ts): a runaway template ends in a TemplateError, never a stuck worker.
 */
export function renderEmail(
  t: CompiledTemplate, layout: CompiledPart | null, ctx: TemplateContext, target: RenderTarget, limits: RenderLimits = DEFAULT_LIMITS,
): RenderedEmail {
  const options = runtimeOptions(target);
  ctx = printable(ctx);
  const { subject, preheader, html } = withBudget(limits, () => {
    const subject = plainHeaderText(runPart(t.subject, ctx, options));
    if (!subject) throw new TemplateError({ file: t.file, line: t.subject.place.line, message: 'the subject renders empty', hint: 'put {{reference}} in the subject' });
    const preheader = t.preheader ? plainHeaderText(runPart(t.preheader, ctx, options)) || null : null;
    const body = runPart(t.body, ctx, options);
    const html = layout
      ? runPart(layout, { ...ctx, body: new Handlebars.SafeString(body), subject, preheader }, options)
      : body;
    return { subject, preheader, html };
  });
  const finished = finish(t, html, limits);
  return { subject, preheader, html: finished, text: htmlToText(finished, t.file), file: t.file };
}

/** Size checked before and after inlining: a `* { ... }` rule can multiply the HTML. */
function finish(t: CompiledTemplate, html: string, limits: RenderLimits): string {
  const fail = (error: unknown, prefix = ''): never => {
    const problem = problemFrom(error, { place: t.body.place, ast: null });
    throw new TemplateError({ ...problem, file: t.file, line: t.body.place.line, message: `${prefix}${problem.message}` });
  };
  try {
    checkHtmlSize(html, limits);
  } catch (error) {
    fail(error);
  }
  let inlined = html;
  try {
    inlined = inlineCss(html);
  } catch (error) {
    fail(error, 'the CSS could not be inlined: ');
  }
  try {
    checkHtmlSize(inlined, limits);
  } catch (error) {
    fail(error, 'with its CSS inlined, ');
  }
  return inlined;
}

/**
 * Many mail programs drop `<style>` blocks, so their rules become `style` attributes. Only the
 * client part of juice is used: it never fetches `<link>` stylesheets or images (templates are
 * semi-trusted). `@media` rules cannot be inlined and stay in the `<style>` block. HTML without
 * a `<style>` block is left exactly as rendered.
 */
function inlineCss(html: string): string {
  if (!/<style[\s>]/i.test(html)) return html;
  return loadJuice()(html, { removeStyleTags: true, preserveMediaQueries: true, preserveFontFaces: true, preserveImportant: true, applyWidthAttributes: true });
}

let juice: typeof Juice | null = null;

/** juice (with cheerio) takes ~0.3 s to load: only when an email has a <style> block, not at every command's start. */
function loadJuice(): typeof Juice {
  juice ??= createRequire(import.meta.url)('juice/client') as typeof Juice;
  return juice;
}

/**
 * html-to-text's `convert` compiles its options (the selectors into a decision tree) on every
 * call, which cost more than the rest of a render; `compile` does it once, at the first render
 * (not at every command's start).
 */
let toText: ((html: string) => string) | null = null;

function htmlToText(html: string, file: string): string {
  try {
    toText ??= compile({
      wordwrap: 78,
      selectors: [
        { selector: 'a', options: { hideLinkHrefIfSameAsText: true } },
        { selector: 'img', format: 'skip' },
        // The preheader is the inbox preview, hidden in the HTML. In the text part it would only
        // repeat the opening lines: text-only readers see no preview line, and clients take the
        // preview from the HTML part.
        { selector: '.preheader', format: 'skip' },
      ],
    });
    return toText(html).trim();
  } catch (error) {
    throw new TemplateError({ file, line: 0, message: `the plain-text part could not be made: ${(error as Error).message}` });
  }
}
