/**
 * The template language Nudge offers marketers, and a reader that checks templates against it.
 *
 * Helpers: only `formatMoney` and `formatDate` (contract), in an isolated Handlebars environment.
 * Templates are semi-trusted input, so nothing here reaches the file system or the network, and
 * nothing is read from module state: the recipient's locale and time zone arrive with each
 * render, in `options.data`.
 *
 * Reading: `staticProblems` walks a template's AST for unknown variables, helpers and partials,
 * so a misspelling in a branch no sample render takes is still found.
 */
import Handlebars from 'handlebars';
import { installBudget } from './budget.ts';
import { remember } from '../memo.ts';
import { findNode, pathName, problemAt, type SourcePlace, type TemplateProblem } from './problems.ts';
import type { CompiledPart, CompiledTemplate } from './render.ts';

/** What every render passes as Handlebars `data`: `{{@locale}}` and `{{@timeZone}}` in templates. */
export interface RenderData {
  /** BCP 47 tag of the recipient, e.g. `de-AT`. */
  locale: string;
  /** IANA zone of the recipient, e.g. `Europe/Vienna`. */
  timeZone: string;
}

export type HandlebarsEnv = typeof Handlebars;

/** Names templates may call as helpers (the built-in block helpers plus ours). */
export function knownHelpers(hb: HandlebarsEnv): ReadonlySet<string> {
  // helperMissing/blockHelperMissing are Handlebars internals, not something a template calls.
  return new Set(Object.keys(hb.helpers).filter((name) => !name.endsWith('Missing')));
}

/** A fresh environment: built-ins if/unless/each/with/lookup, plus formatMoney and formatDate. */
export function createEnvironment(): HandlebarsEnv {
  const hb = Handlebars.create();
  // `log` writes whatever it is given to the console: titles and addresses must not reach logs.
  hb.unregisterHelper('log');
  installBudget(hb);
  hb.registerHelper('formatMoney', located(function formatMoneyHelper(args, options) {
    failOn(callProblem('formatMoney', args.length, Object.keys(options.hash ?? {})));
    return formatMoney(args[0], args[1], dataOf(options).locale);
  }));
  hb.registerHelper('formatDate', located(function formatDateHelper(args, options) {
    failOn(callProblem('formatDate', args.length, Object.keys(options.hash ?? {})));
    const { style, time } = options.hash as { style?: unknown; time?: unknown };
    return formatDate(args[0], { ...dataOf(options), style: style ?? 'long', time: time ?? null });
  }));
  return hb;
}

type HelperBody = (args: unknown[], options: Handlebars.HelperOptions) => string;
type HelperLocation = { start: { line: number; column: number } };

/**
 * A helper whose errors say where the call is (Handlebars passes it as `options.loc`): without
 * it, the second of two bad `formatDate` calls was reported at the first.
 */
function located(body: HelperBody): Handlebars.HelperDelegate {
  return (...args: unknown[]) => {
    const options = args.pop() as Handlebars.HelperOptions & { loc?: HelperLocation };
    try {
      return body(args, options);
    } catch (error) {
      const start = options.loc?.start;
      if (error instanceof Error && start && (error as { lineNumber?: unknown }).lineNumber === undefined) {
        Object.assign(error, { lineNumber: start.line, column: start.column });
      }
      throw error;
    }
  };
}

/** Throws `problem`, when there is one: the render's side of what the static check reports. */
function failOn(problem: string | null): void {
  if (problem !== null) throw new Error(problem);
}

/** How Nudge's helpers are called: their arguments, and the options (`key=value`) each takes. */
const HELPER_CALLS: Readonly<Record<string, { params: number; usage: string; options: readonly string[] }>> = {
  formatMoney: { params: 2, usage: 'formatMoney needs an amount and a currency: {{formatMoney opportunity.amount opportunity.currency}}', options: [] },
  formatDate: { params: 1, usage: 'formatDate needs one date: {{formatDate opportunity.closingDate}}', options: ['style', 'time'] },
};

/** The first thing wrong with a call of one of Nudge's helpers, or null; the static check and the render share it. */
function callProblem(helper: string, params: number, keys: readonly string[]): string | null {
  const call = HELPER_CALLS[helper];
  if (!call) return null;
  if (params !== call.params) return call.usage;
  const unknown = keys.find((key) => !call.options.includes(key));
  return unknown === undefined ? null : `${helper}: unknown option "${unknown}"${call.options.length ? ` (allowed: ${call.options.join(', ')})` : ''}`;
}

function dataOf(options: Handlebars.HelperOptions): RenderData {
  const data = (options.data ?? {}) as Partial<RenderData>;
  return { locale: data.locale ?? 'en', timeZone: data.timeZone ?? 'UTC' };
}

const DECIMAL = /^[-+]?\d+(\.\d+)?$/;

/**
 * An amount in the recipient's locale, e.g. `12.000,50 €`. A blank amount (null, undefined, '')
 * gives '' so a sentence can be wrapped in `{{#if opportunity.amount}}`; whole amounts drop `.00`.
 */
export function formatMoney(amount: unknown, currency: unknown, locale: string): string {
  if (amount === null || amount === undefined) return '';
  const text = typeof amount === 'number' ? String(amount) : typeof amount === 'string' ? amount.trim() : null;
  if (text === '') return '';
  // Strings keep every digit: Intl formats a decimal string exactly, a float would round.
  if (text === null || !DECIMAL.test(text)) throw new Error(`formatMoney: the amount ${JSON.stringify(amount)} is not a decimal number`);
  const code = typeof currency === 'string' ? currency.trim().toUpperCase() : '';
  if (!/^[A-Z]{3}$/.test(code)) throw new Error(`formatMoney: ${JSON.stringify(currency ?? null)} is not a currency code such as EUR`);
  const key = `${locale}|${code}`;
  const format = numberFormats.get(key) ?? remember(numberFormats, key,
    new Intl.NumberFormat(safeLocale(locale), { style: 'currency', currency: code, trailingZeroDisplay: 'stripIfInteger' }), MEMO_LIMIT);
  return format.format(text as `${number}`);
}

type DateStyle = 'short' | 'medium' | 'long' | 'full';
const STYLES: readonly string[] = ['short', 'medium', 'long', 'full'];

export interface DateFormat extends RenderData {
  /** `dateStyle` of Intl.DateTimeFormat. @defaultValue 'long' */
  style: unknown;
  /** `timeStyle` for instants; null: the date only. @defaultValue null */
  time: unknown;
}

/**
 * A `YYYY-MM-DD` calendar day is formatted as that very day, whatever the process or recipient
 * zone (a day has no zone: it is formatted in UTC, where it was built). A `Date` or an ISO
 * instant is an instant: it is shown in the recipient's zone. Blank gives ''.
 */
export function formatDate(value: unknown, f: DateFormat): string {
  if (value === null || value === undefined || (typeof value === 'string' && value.trim() === '')) return '';
  const dateStyle = checkStyle('style', f.style);
  const timeStyle = f.time === null ? undefined : checkStyle('time', f.time);
  const locale = safeLocale(f.locale);
  const day = typeof value === 'string' ? calendarDay(value.trim()) : null;
  if (day) return dateFormat(locale, dateStyle, undefined, 'UTC').format(day);
  const instant = toInstant(value);
  if (!instant) throw new Error(`formatDate: ${JSON.stringify(value)} is not a date (YYYY-MM-DD) or an instant`);
  return dateFormat(locale, dateStyle, timeStyle, safeTimeZone(f.timeZone)).format(instant);
}

function dateFormat(locale: string, dateStyle: DateStyle, timeStyle: DateStyle | undefined, timeZone: string): Intl.DateTimeFormat {
  const key = `${locale}|${dateStyle}|${timeStyle ?? ''}|${timeZone}`;
  return dateFormats.get(key) ?? remember(dateFormats, key, new Intl.DateTimeFormat(locale, { dateStyle, timeStyle, timeZone }), MEMO_LIMIT);
}

function checkStyle(option: string, style: unknown): DateStyle {
  failOn(styleProblem(option, style));
  return style as DateStyle;
}

/** What is wrong with formatDate's `style` or `time`, or null; the static check and the render share it. */
function styleProblem(option: string, style: unknown): string | null {
  return typeof style === 'string' && STYLES.includes(style) ? null : `formatDate: ${option}="${String(style)}" is not one of ${STYLES.join(', ')}`;
}

/** Midnight UTC of a real calendar day, or null when the text is not `YYYY-MM-DD`. */
function calendarDay(text: string): Date | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
  if (!m) return null;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  if (date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day) throw new Error(`formatDate: ${text} is not a calendar day`);
  return date;
}

function toInstant(value: unknown): Date | null {
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value;
  // Only full ISO instants: `Date.parse` would accept "March 1" and guess a zone.
  if (typeof value !== 'string' || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(value.trim())) return null;
  const date = new Date(value.trim());
  return Number.isNaN(date.getTime()) ? null : date;
}

/** A CRM locale may be malformed (`de_AT`, `german`): format in English rather than fail the send. */
export function safeLocale(locale: string): string {
  const known = locales.get(locale);
  if (known !== undefined) return known;
  // A malformed tag (`de-AT-AT`) still names its language and region: subtags are dropped from the
  // end until one is valid, as the template's locale variant is picked (`de-AT`, then `de`).
  let canonical: string | null = null;
  for (let tag = locale.trim().replace(/_/g, '-'); tag && canonical === null; tag = tag.includes('-') ? tag.slice(0, tag.lastIndexOf('-')) : '') {
    canonical = canonicalLocale(tag);
  }
  return remember(locales, locale, canonical ?? 'en', MEMO_LIMIT);
}

function canonicalLocale(tag: string): string | null {
  try {
    return Intl.getCanonicalLocales(tag)[0] ?? null;
  } catch {
    return null;
  }
}

function safeTimeZone(timeZone: string): string {
  const known = zones.get(timeZone);
  if (known !== undefined) return known;
  let valid: string;
  try {
    new Intl.DateTimeFormat('en', { timeZone });
    valid = timeZone;
  } catch {
    valid = 'UTC';
  }
  return remember(zones, timeZone, valid, MEMO_LIMIT);
}

// Building an Intl formatter costs far more than formatting with it (formatDate alone was a third
// of a render in a CPU profile): the few locales, zones, styles and currencies in use are kept.
const numberFormats = new Map<string, Intl.NumberFormat>();
const dateFormats = new Map<string, Intl.DateTimeFormat>();
const locales = new Map<string, string>();
const zones = new Map<string, string>();
const MEMO_LIMIT = 1_000;

/**
 * Header-safe plain text: CR, LF and every other control character become a space (a title like
 * "Trip\r\nBcc: x" must not add a header), then whitespace is collapsed. Bidirectional overrides
 * and isolates go too: U+202E in a title makes the rest of the subject read backwards.
 */
export function plainHeaderText(text: string): string {
  return text.replace(/[\u0000-\u001F\u007F-\u009F]/g, ' ').replace(/[\u202A-\u202E\u2066-\u2069]/g, '').replace(/\s+/g, ' ').trim();
}

// Reading templates without rendering them: which variables, helpers and partials they use.

/** What the static check needs from a loaded templates folder. */
export interface TemplateSet {
  layouts: Map<string, CompiledPart | TemplateProblem>;
  partials: Map<string, CompiledPart | TemplateProblem>;
  /** Helper names templates may call. */
  helpers: ReadonlySet<string>;
}

/** The properties of a context value; null: a value that is printed, not read into. */
type Shape = { readonly [key: string]: Shape | null };

const CONTEXT: Shape = {
  opportunity: {
    id: null, title: null, amount: null, currency: null, closingDate: null, expectedRevenue: null,
    stage: { key: null, label: null, probability: null },
  },
  contact: { firstName: null, lastName: null, email: null, locale: null },
  owner: { email: null },
  reference: null,
  unsubscribeUrl: null,
};
const LAYOUT_CONTEXT: Shape = { ...CONTEXT, body: null, subject: null, preheader: null };
const DATA_VARIABLES = new Set(['root', 'index', 'key', 'first', 'last', 'locale', 'timeZone']);

interface Walk {
  set: TemplateSet;
  place: SourcePlace;
  /** What `@root` is: the email's context, or a layout's. */
  root: Shape;
  /** What the depth-0 context is: `root`, plus a partial's hash arguments. */
  shape: Shape;
  inline: ReadonlySet<string>;
  problems: TemplateProblem[];
  visited: Set<string>;
  placedBody: { value: boolean };
  /** A partial given another context: its variables are not the email's, only its calls are read. */
  callsOnly?: boolean;
}

/**
 * Every unknown variable, helper and partial of a template (subject, preheader, body, its layout
 * and the partials they include), whether or not a sample render takes that branch. Inside
 * `#each`/`#with` the context is no longer the email's, so only `@root.` and `../` paths are read.
 */
export function staticProblems(set: TemplateSet, t: CompiledTemplate): TemplateProblem[] {
  const base = { set, problems: [] as TemplateProblem[], visited: new Set<string>(), placedBody: { value: false } };
  const walk = (part: CompiledPart, root: Shape) => walkPart(part, { ...base, place: part.place, root, shape: root, inline: new Set() });
  walk(t.subject, CONTEXT);
  if (t.preheader) walk(t.preheader, CONTEXT);
  walk(t.body, CONTEXT);
  const layout = t.layout ? set.layouts.get(t.layout.name) : undefined;
  if (layout && !('message' in layout)) {
    walk(layout, LAYOUT_CONTEXT);
    if (!base.placedBody.value) base.problems.push({ file: layout.place.file, line: 0, message: 'the layout never places the body', hint: 'add {{{body}}} where the email content goes' });
  }
  return base.problems;
}

function walkPart(part: CompiledPart, w: Walk): void {
  const inline = new Set<string>();
  findNode(part.ast, (n) => {
    const b = n as hbs.AST.BlockStatement;
    if (n.type === 'DecoratorBlock' && b.path.original === 'inline' && b.params[0]?.type === 'StringLiteral') inline.add((b.params[0] as hbs.AST.StringLiteral).value);
    return false;
  });
  walkProgram(part.ast, 0, { ...w, place: part.place, inline });
}

function walkProgram(program: hbs.AST.Program, depth: number, w: Walk): void {
  for (const node of program.body) {
    if (node.type === 'MustacheStatement') {
      checkCall(node as hbs.AST.MustacheStatement, depth, w);
      checkEscaped(node as hbs.AST.MustacheStatement, w);
    }
    if (node.type === 'PartialStatement' || node.type === 'PartialBlockStatement') checkPartial(node as hbs.AST.PartialBlockStatement, depth, w);
    if (node.type === 'BlockStatement' || node.type === 'DecoratorBlock') {
      const block = node as hbs.AST.BlockStatement;
      if (node.type === 'BlockStatement') checkCall(block, depth, w);
      if (block.program) walkProgram(block.program, node.type === 'BlockStatement' && changesContext(block, w) ? depth + 1 : depth, w);
      // `{{else}}` of #each/#with runs in the outer context.
      if (block.inverse) walkProgram(block.inverse, depth, w);
    }
  }
}

function changesContext(block: hbs.AST.BlockStatement, w: Walk): boolean {
  const name = block.path.original;
  return !isHelperCall(block.path, w) || name === 'each' || name === 'with';
}

function isHelperCall(path: hbs.AST.PathExpression, w: Walk): boolean {
  return !path.data && path.depth === 0 && path.parts.length === 1 && !/^(this\b|\.)/.test(path.original) && w.set.helpers.has(path.original);
}

type Call = Pick<hbs.AST.MustacheStatement, 'params' | 'hash' | 'loc'> & { path: hbs.AST.Node };

function checkArguments(node: Pick<Call, 'params' | 'hash'>, depth: number, w: Walk): void {
  for (const e of [...node.params, ...(node.hash?.pairs.map((p) => p.value) ?? [])]) {
    if (e.type === 'PathExpression') checkPath(e as hbs.AST.PathExpression, depth, w);
    if (e.type === 'SubExpression') checkCall(e as hbs.AST.SubExpression, depth, w);
  }
}

function checkCall(node: Call, depth: number, w: Walk): void {
  checkArguments(node, depth, w);
  if (node.path.type !== 'PathExpression') return;
  const path = node.path as hbs.AST.PathExpression;
  if (isHelperCall(path, w)) {
    const literal = node.params.find((p) => p.type === 'StringLiteral' && isPrototypeName((p as hbs.AST.StringLiteral).value));
    if (literal) return report(w, literal, `${path.original} of a JavaScript internal is not allowed`, 'remove it: templates read only the variables listed in the README');
    // `{{lookup opportunity "title"}}` is `opportunity.title`, read as such: a misspelt key would
    // otherwise render blank (strict mode leaves lookup alone). A key that is a variable is not known here.
    const [target, key] = node.params;
    if (path.original === 'lookup' && target?.type === 'PathExpression' && key?.type === 'StringLiteral') {
      const of = target as hbs.AST.PathExpression;
      const name = (key as hbs.AST.StringLiteral).value;
      checkPath({ ...of, parts: [...of.parts, name], original: `${of.original === 'this' ? '' : `${of.original}.`}${name}`, loc: key.loc }, depth, w);
    }
    checkHelperCall(node, path.original, w);
    return;
  }
  if (node.params.length || node.hash?.pairs.length) return report(w, path, `unknown helper "${path.original}"`, `use one of ${[...w.set.helpers].sort().join(', ')}`);
  checkPath(path, depth, w);
}

/**
 * formatMoney's and formatDate's arguments and options, and a written date style, checked where
 * they are written (a render stops at its first error, and may not take the branch at all).
 */
function checkHelperCall(node: Call, helper: string, w: Walk): void {
  const pairs = node.hash?.pairs ?? [];
  const wrong = callProblem(helper, node.params.length, pairs.map((p) => p.key));
  if (wrong !== null) return report(w, node, wrong);
  if (helper !== 'formatDate') return;
  for (const pair of pairs) {
    if (!['StringLiteral', 'NumberLiteral', 'BooleanLiteral'].includes(pair.value.type)) continue;
    const problem = styleProblem(pair.key, (pair.value as hbs.AST.StringLiteral | hbs.AST.NumberLiteral | hbs.AST.BooleanLiteral).value);
    if (problem !== null) return report(w, node, problem);
  }
}

/**
 * Three braces (`{{{x}}}`, `{{& x}}`) put a value into the HTML as it is: a title the CRM holds as
 * `<script>…` would go out as a script. Every value is escaped; only a layout's `{{{body}}}`,
 * which is the email's own rendered HTML, takes three.
 */
function checkEscaped(node: hbs.AST.MustacheStatement, w: Walk): void {
  if (node.escaped) return;
  const name = node.path.type === 'PathExpression' ? (node.path as hbs.AST.PathExpression).original : '…';
  if (w.root === LAYOUT_CONTEXT && name === 'body') return;
  report(w, node, `{{{${name}}}} puts the CRM's text into the email unescaped`, `write {{${name}}}: values are escaped for HTML (only a layout's {{{body}}} takes three braces)`);
}

function checkPath(path: hbs.AST.PathExpression, depth: number, w: Walk): void {
  if (w.callsOnly) return;
  const internal = path.parts.find(isPrototypeName);
  if (internal !== undefined) return report(w, path, `"${path.original}" reaches into JavaScript internals ("${internal}"): not allowed`, 'remove it: templates read only the variables listed in the README');
  if (path.data) {
    const [head, ...rest] = path.parts;
    if (head === 'root') return checkShape(path, rest, w.root, w);
    if (!DATA_VARIABLES.has(head ?? '')) report(w, path, `unknown data variable "@${head}"`, `use one of ${[...DATA_VARIABLES].map((d) => `@${d}`).join(', ')}`);
    return;
  }
  if (depth - path.depth > 0) return;
  checkShape(path, path.parts, w.shape, w);
}

function checkShape(path: hbs.AST.PathExpression, parts: string[], shape: Shape, w: Walk): void {
  let current: Shape | null = shape;
  for (const [i, part] of parts.entries()) {
    if (current === null) return report(w, path, `"${path.original}": ${parts.slice(0, i).join('.')} has no "${part}"`, `use {{${parts.slice(0, i).join('.')}}} itself`);
    if (!Object.hasOwn(current, part)) return report(w, path, `unknown variable "${path.original}"`, suggestion(part, Object.keys(current)));
    current = current[part] ?? null;
  }
  if (parts[0] === 'body') w.placedBody.value = true;
}

function checkPartial(node: hbs.AST.PartialBlockStatement, depth: number, w: Walk): void {
  checkArguments(node, depth, w);
  if (node.program) walkProgram(node.program, depth, w);
  const name = pathName(node.name);
  if (name === null) return checkCall(node.name as hbs.AST.SubExpression, depth, w);
  if (name.startsWith('@') || w.inline.has(name)) return;
  const part = w.set.partials.get(name);
  if (!part) return report(w, node, `unknown partial "${name}"`, `create partials/${name}.hbs or correct the name`);
  // A broken partial is its own problem; one given another context is not read as the email's,
  // but its calls of helpers and partials are still read.
  if ('message' in part) return;
  const callsOnly = w.callsOnly || node.params.length > 0 || depth > 0;
  const keys = node.hash?.pairs.map((p) => p.key) ?? [];
  const id = `${name}|${keys.join(',')}|${w.root === LAYOUT_CONTEXT}|${callsOnly}`;
  if (w.visited.has(id)) return;
  w.visited.add(id);
  walkPart(part, { ...w, callsOnly, shape: { ...w.shape, ...Object.fromEntries(keys.map((k) => [k, null])) } });
}

function report(w: Walk, node: Pick<hbs.AST.Node, 'loc'>, message: string, hint?: string): void {
  w.problems.push(problemAt(w.place, node.loc.start.line, node.loc.start.column, message, hint));
}

/** `__proto__`, `constructor`, `toString`...: nothing a template has a reason to read. */
function isPrototypeName(name: string): boolean {
  return name === 'prototype' || Object.hasOwn(Object.prototype, name);
}

/** "did you mean" when a candidate is close, else the candidates. */
function suggestion(word: string, candidates: string[]): string {
  const near = candidates.find((c) => distance(word.toLowerCase(), c.toLowerCase()) <= 2);
  return near ? `did you mean "${near}"?` : `use one of ${candidates.join(', ')}`;
}

/** Levenshtein distance, for "did you mean". */
function distance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length]!;
}
