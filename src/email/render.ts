/**
 * One template file, from text to email: front-matter, compiled parts, and a render that turns
 * every Handlebars failure into a `TemplateProblem` naming the file and the line in that file.
 */
import Handlebars from 'handlebars';
import { convert } from 'html-to-text';
import { LineCounter, parseDocument, Scalar, isMap, isScalar } from 'yaml';
import { findNode, pathName, plainHeaderText, problemAt, type HandlebarsEnv, type RenderData } from './helpers.ts';

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

export interface TemplateProblem {
  /** Relative to the templates folder (`partials/footer.hbs`); the folder itself when it is missing. */
  file: string;
  /** 1-based; 0 when the problem is about the file as a whole. */
  line: number;
  /** 1-based, when Handlebars gives one. */
  column?: number;
  message: string;
}

/** `closing-soon.hbs:12:5: message`. */
export function formatProblem(p: TemplateProblem): string {
  if (p.line <= 0) return `${p.file}: ${p.message}`;
  return `${p.file}:${p.line}${p.column ? `:${p.column}` : ''}: ${p.message}`;
}

export class TemplateError extends Error {
  override readonly name = 'TemplateError';
  constructor(readonly problem: TemplateProblem) {
    super(formatProblem(problem));
  }
}

/** Where a piece of Handlebars source sits in its file. */
export interface SourcePlace {
  file: string;
  /** File line of the source's line 1. */
  line: number;
  /** 0-based file column of the source's first character (its first line only). */
  column: number;
}

/** A compiled piece of Handlebars: a body, a subject, a preheader, a layout or a partial. */
export interface CompiledPart {
  place: SourcePlace;
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
    return { place, ast, render: hb.compile(source, { strict: true, noEscape: plain }) };
  } catch (error) {
    return problemFrom(error, { place, ast: null });
  }
}

const FRONT_MATTER_KEYS = ['subject', 'preheader', 'layout'];

/** A template file: front-matter between `---` lines, then the HTML body. */
export function compileTemplateFile(hb: HandlebarsEnv, file: string, raw: string): { template: CompiledTemplate | null; problems: TemplateProblem[] } {
  const lines = raw.replace(/^\uFEFF/, '').replace(/\r\n?/g, '\n').split('\n');
  const close = lines.findIndex((l, i) => i > 0 && l.trimEnd() === '---');
  if (lines[0]?.trimEnd() !== '---' || close < 0) {
    const message = lines[0]?.trimEnd() !== '---'
      ? "a template starts with front-matter: a '---' line, 'subject: ...', and a closing '---' line"
      : "the front-matter opened on line 1 is never closed with a '---' line";
    return { template: null, problems: [{ file, line: 1, message }] };
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
  }));
  const fields: FrontMatter = {};
  if (problems.length) return { fields, problems };
  if (!isMap(doc.contents)) return { fields, problems: [{ file, line: 2, message: 'front-matter: expected "key: value" lines (subject, preheader, layout)' }] };
  for (const pair of doc.contents.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : '?';
    const keyAt = at(isScalar(pair.key) ? pair.key.range?.[0] ?? 0 : 0);
    const value = pair.value;
    if (!FRONT_MATTER_KEYS.includes(key)) {
      problems.push({ file, line: keyAt.line, column: keyAt.col, message: `unknown front-matter key "${key}" (allowed: ${FRONT_MATTER_KEYS.join(', ')})` });
    } else if (!isScalar(value) || value.value === null || !['string', 'number'].includes(typeof value.value) || String(value.value).trim() === '') {
      problems.push({ file, line: keyAt.line, message: `front-matter: ${key} must be text` });
    } else if (key === 'layout') {
      const name = String(value.value).trim();
      if (/^[\w-]+$/.test(name)) fields.layout = { name, line: keyAt.line };
      else problems.push({ file, line: keyAt.line, message: `front-matter: layout "${name}" is not a layout name (a file name in layouts/, without .hbs)` });
    } else {
      fields[key as 'subject' | 'preheader'] = { text: String(value.value), place: valuePlace(file, value, at) };
    }
  }
  if (!doc.contents.items.some((pair) => isScalar(pair.key) && pair.key.value === 'subject')) problems.push({ file, line: 1, message: 'the front-matter has no subject' });
  return { fields, problems };
}

/** Where a scalar's text starts, so a Handlebars position inside a subject maps to the file. */
function valuePlace(file: string, value: Scalar, at: (offset: number) => { line: number; col: number }): SourcePlace {
  const start = at(value.range?.[0] ?? 0);
  if (value.type === Scalar.BLOCK_LITERAL || value.type === Scalar.BLOCK_FOLDED) return { file, line: start.line + 1, column: 0 };
  const quoted = value.type === Scalar.QUOTE_DOUBLE || value.type === Scalar.QUOTE_SINGLE;
  return { file, line: start.line, column: start.col - 1 + (quoted ? 1 : 0) };
}

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

/** Subject and preheader as header-safe text; body; layout around it; plain text from the result. */
export function renderEmail(t: CompiledTemplate, layout: CompiledPart | null, ctx: TemplateContext, target: RenderTarget): RenderedEmail {
  const options = runtimeOptions(target);
  const subject = plainHeaderText(runPart(t.subject, ctx, options));
  if (!subject) throw new TemplateError({ file: t.file, line: t.subject.place.line, message: 'the subject renders empty' });
  const preheader = t.preheader ? plainHeaderText(runPart(t.preheader, ctx, options)) || null : null;
  const body = runPart(t.body, ctx, options);
  const html = layout
    ? runPart(layout, { ...ctx, body: new Handlebars.SafeString(body), subject, preheader }, options)
    : body;
  return { subject, preheader, html, text: htmlToText(html), file: t.file };
}

function htmlToText(html: string): string {
  return convert(html, {
    wordwrap: 78,
    selectors: [
      { selector: 'a', options: { hideLinkHrefIfSameAsText: true } },
      { selector: 'img', format: 'skip' },
      // The preheader is the inbox preview, hidden in the HTML: not the first line of the text.
      { selector: '.preheader', format: 'skip' },
    ],
  }).trim();
}

/** Handlebars reports positions three ways: `lineNumber`/`column`, "on line N", or not at all. */
export function problemFrom(error: unknown, part: { place: SourcePlace; ast: hbs.AST.Program | null }): TemplateProblem {
  const e = (error ?? {}) as { message?: unknown; lineNumber?: unknown; column?: unknown };
  const raw = typeof e.message === 'string' ? e.message : String(error);
  let line = typeof e.lineNumber === 'number' ? e.lineNumber : Number(/on line (\d+)/.exec(raw)?.[1] ?? NaN);
  let column = typeof e.column === 'number' && typeof e.lineNumber === 'number' ? e.column : undefined;
  if (Number.isNaN(line) && part.ast) {
    const loc = locate(part.ast, raw);
    if (loc) ({ line, column } = loc);
  }
  const message = describe(raw, part.ast, line, column);
  if (Number.isNaN(line)) return { file: part.place.file, line: part.place.line, message };
  return problemAt(part.place, line, column, message);
}

const SYNTAX_HINTS: Record<string, string> = {
  EOF: 'the template ends inside a block or a {{ }} (is a {{/if}}, {{/each}} or }} missing?)',
  INVALID: 'unexpected character inside {{ }} (is a brace missing?)',
};

/** One line a marketer can act on, instead of Handlebars' internals. */
function describe(raw: string, ast: hbs.AST.Program | null, line: number, column: number | undefined): string {
  const parse = /^Parse error on line \d+:[\s\S]*\n(.*)$/.exec(raw);
  if (parse) return `syntax error: ${SYNTAX_HINTS[/got '(\w+)'/.exec(parse[1]!)?.[1] ?? ''] ?? parse[1]}`;
  const mismatch = /^(\S+) doesn't match (\S+)/.exec(raw);
  if (mismatch) return `syntax error: {{#${mismatch[1]}}} is closed by {{/${mismatch[2]}}}`;
  const strict = /^"(.*)" not defined in (.*?)(?: - \d+:\d+)?$/.exec(raw);
  if (strict) {
    const found = ast && column !== undefined ? findNode(ast, (n) => n.type === 'PathExpression' && n.loc.start.line === line && n.loc.start.column === column) : null;
    const path = (found as hbs.AST.PathExpression | null)?.original ?? strict[1]!;
    if (strict[2] === 'null') return `"${path}" cannot be read: ${path.split('.').slice(0, -1).join('.') || 'its parent'} is null here (guard it with {{#if}})`;
    return `unknown variable "${path}"`;
  }
  const nullRead = /Cannot read properties of (null|undefined) \(reading '(.*)'\)/.exec(raw);
  if (nullRead) return `"${nullRead[2]}" cannot be read: its parent is ${nullRead[1]} here (guard it with {{#if}})`;
  return raw.split('\n')[0]!.replace(/ - \d+:\d+$/, '');
}

/** For errors Handlebars does not locate: the first node the message is about. */
function locate(ast: hbs.AST.Program, message: string): { line: number; column: number } | null {
  const partial = /The partial (.+) could not be found/.exec(message)?.[1];
  const property = /\(reading '(.*)'\)/.exec(message)?.[1];
  const helper = /^(\w+)(?::| needs)/.exec(message)?.[1];
  const node = findNode(ast, (n) => {
    if (partial !== undefined) return (n.type === 'PartialStatement' || n.type === 'PartialBlockStatement') && pathName((n as hbs.AST.PartialStatement).name) === partial;
    if (property !== undefined) return n.type === 'PathExpression' && (n as hbs.AST.PathExpression).parts.indexOf(property) > 0;
    return helper !== undefined && ['MustacheStatement', 'BlockStatement', 'SubExpression'].includes(n.type) && pathName((n as hbs.AST.MustacheStatement).path) === helper;
  });
  return node ? { line: node.loc.start.line, column: node.loc.start.column } : null;
}
