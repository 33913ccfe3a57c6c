/**
 * What is wrong with a template, where, and what to do about it: `file:line:column: message
 * (fix: hint)`. Handlebars failures (syntax, strict variables, helpers, render limits) are turned
 * into one line a marketer can act on, located in the file they edit.
 */

export interface TemplateProblem {
  /** Relative to the templates folder (`partials/footer.hbs`); the folder itself when it is missing. */
  file: string;
  /** 1-based; 0 when the problem is about the file as a whole. */
  line: number;
  /** 1-based, when known. */
  column?: number;
  message: string;
  /** One line: what to change. Printed as ` (fix: hint)`. */
  hint?: string;
  /**
   * `error` (the default): the template is refused (`templates check` exits 1, `start` and `tick`
   * refuse to run, a running daemon keeps the last good version). `warning`: printed by
   * `templates check` and `send-test`, nothing refused.
   */
  severity?: 'error' | 'warning';
}

/** `closing-soon.hbs:12:5: message (fix: hint)`, with `warning: ` before a warning's message. */
export function formatProblem(p: TemplateProblem): string {
  const text = `${p.severity === 'warning' ? 'warning: ' : ''}${p.message}${p.hint ? ` (fix: ${p.hint})` : ''}`;
  if (p.line <= 0) return `${p.file}: ${text}`;
  return `${p.file}:${p.line}${p.column ? `:${p.column}` : ''}: ${text}`;
}

export function isWarning(p: TemplateProblem): boolean {
  return p.severity === 'warning';
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

/** A Handlebars position (1-based line, 0-based column, within `place`) as a file position. */
export function problemAt(place: SourcePlace, line: number, column: number | undefined, message: string, hint?: string): TemplateProblem {
  const problem: TemplateProblem = { file: place.file, line: place.line + line - 1, message };
  if (column !== undefined) problem.column = (line === 1 ? place.column : 0) + column + 1;
  if (hint) problem.hint = hint;
  return problem;
}

/** Handlebars reports positions three ways: `lineNumber`/`column`, "on line N", or not at all. */
export function problemFrom(error: unknown, part: { place: SourcePlace; ast: hbs.AST.Program | null }): TemplateProblem {
  const e = (error ?? {}) as { message?: unknown; lineNumber?: unknown; column?: unknown; hint?: unknown; partial?: unknown };
  const raw = typeof e.message === 'string' ? e.message : String(error);
  let line = typeof e.lineNumber === 'number' ? e.lineNumber : Number(/on line (\d+)/.exec(raw)?.[1] ?? NaN);
  let column = typeof e.column === 'number' && typeof e.lineNumber === 'number' ? e.column : undefined;
  if (Number.isNaN(line) && part.ast) {
    const loc = locate(part.ast, raw, typeof e.partial === 'string' ? e.partial : undefined);
    if (loc) ({ line, column } = loc);
  }
  const { message, hint } = typeof e.hint === 'string' ? { message: raw, hint: e.hint } : describe(raw, part.ast, line, column);
  if (Number.isNaN(line)) return { file: part.place.file, line: part.place.line, message, ...(hint ? { hint } : {}) };
  return problemAt(part.place, line, column, message, hint);
}

const SYNTAX_HINTS: Record<string, { message: string; hint: string }> = {
  EOF: { message: 'the template ends inside a block or a {{ }}', hint: 'close it: is a {{/if}}, {{/each}} or }} missing?' },
  INVALID: { message: 'unexpected character inside {{ }}', hint: 'is a brace missing? A variable is written {{name}}' },
};

/** One line a marketer can act on, instead of Handlebars' internals. */
function describe(raw: string, ast: hbs.AST.Program | null, line: number, column: number | undefined): { message: string; hint?: string } {
  const parse = /^Parse error on line \d+:[\s\S]*\n(.*)$/.exec(raw);
  if (parse) {
    const known = SYNTAX_HINTS[/got '(\w+)'/.exec(parse[1]!)?.[1] ?? ''];
    return known ? { message: `syntax error: ${known.message}`, hint: known.hint } : { message: `syntax error: ${parse[1]}`, hint: 'check the {{ }} around this place' };
  }
  const mismatch = /^(\S+) doesn't match (\S+)/.exec(raw);
  if (mismatch) return { message: `syntax error: {{#${mismatch[1]}}} is closed by {{/${mismatch[2]}}}`, hint: `close it with {{/${mismatch[1]}}}` };
  const strict = /^"(.*)" not defined in (.*?)(?: - \d+:\d+)?$/.exec(raw);
  if (strict) {
    const found = ast && column !== undefined ? findNode(ast, (n) => n.type === 'PathExpression' && n.loc.start.line === line && n.loc.start.column === column) : null;
    const path = (found as hbs.AST.PathExpression | null)?.original ?? strict[1]!;
    const parent = path.split('.').slice(0, -1).join('.');
    if (strict[2] === 'null') return { message: `"${path}" cannot be read: ${parent || 'its parent'} is null here`, hint: `guard it with {{#if ${parent || path}}}...{{/if}}` };
    // `{{shout title}}`: Handlebars says a helper it does not have is not defined, as a variable.
    const call = ast && column !== undefined ? findNode(ast, (n) => ['MustacheStatement', 'BlockStatement', 'SubExpression'].includes(n.type)
      && (n as hbs.AST.MustacheStatement).path.loc.start.line === line && (n as hbs.AST.MustacheStatement).path.loc.start.column === column
      && ((n as hbs.AST.MustacheStatement).params.length > 0 || ((n as hbs.AST.MustacheStatement).hash?.pairs.length ?? 0) > 0)) : null;
    if (call) return { message: `unknown helper "${path}"`, hint: 'use a helper listed in the README (Templates)' };
    return { message: `unknown variable "${path}"`, hint: 'use a variable listed in the README (Templates)' };
  }
  const nullRead = /Cannot read properties of (null|undefined) \(reading '(.*)'\)/.exec(raw);
  if (nullRead) return { message: `"${nullRead[2]}" cannot be read: its parent is ${nullRead[1]} here`, hint: 'guard it with {{#if ...}}' };
  if (/Maximum call stack size exceeded/.test(raw)) return { message: 'the template calls itself without end', hint: 'a partial must not include itself' };
  return { message: raw.split('\n')[0]!.replace(/ - \d+:\d+$/, '') };
}

/** For errors Handlebars does not locate: the first node the message (or `partial`) is about. */
function locate(ast: hbs.AST.Program, message: string, partialName?: string): { line: number; column: number } | null {
  const partial = partialName ?? /The partial (.+) could not be found/.exec(message)?.[1];
  const property = /\(reading '(.*)'\)/.exec(message)?.[1];
  const helper = /^(\w+)(?::| needs)/.exec(message)?.[1];
  const node = findNode(ast, (n) => {
    if (partial !== undefined) return (n.type === 'PartialStatement' || n.type === 'PartialBlockStatement') && pathName((n as hbs.AST.PartialStatement).name) === partial;
    if (property !== undefined) return n.type === 'PathExpression' && (n as hbs.AST.PathExpression).parts.indexOf(property) > 0;
    return helper !== undefined && ['MustacheStatement', 'BlockStatement', 'SubExpression'].includes(n.type) && pathName((n as hbs.AST.MustacheStatement).path) === helper;
  });
  return node ? { line: node.loc.start.line, column: node.loc.start.column } : null;
}

export function pathName(node: hbs.AST.Node): string | null {
  return node.type === 'PathExpression' ? (node as hbs.AST.PathExpression).original : null;
}

/** Depth-first search over every statement and expression of a Handlebars AST. */
export function findNode(node: hbs.AST.Node, match: (n: hbs.AST.Node) => boolean): hbs.AST.Node | null {
  if (match(node)) return node;
  const n = node as {
    body?: hbs.AST.Node[]; path?: hbs.AST.Node; name?: hbs.AST.Node; params?: hbs.AST.Node[];
    hash?: hbs.AST.Hash; program?: hbs.AST.Program; inverse?: hbs.AST.Program;
  };
  const children: (hbs.AST.Node | undefined)[] = [
    ...(n.body ?? []), n.path, n.name && typeof n.name === 'object' ? n.name : undefined, ...(n.params ?? []),
    ...(n.hash?.pairs.map((p) => p.value) ?? []), n.program, n.inverse,
  ];
  for (const child of children) {
    const found = child ? findNode(child, match) : null;
    if (found) return found;
  }
  return null;
}

/**
 * A template that ends inside a block: Handlebars says so at the end of the file, which is
 * rarely where the mistake is. The `{{#name}}` left open, found by pairing the block tags (comments
 * skipped), is: the problem is put there. Null when no block is left open (an unclosed `{{`).
 */
export function unclosedBlockProblem(error: unknown, source: string, place: SourcePlace): TemplateProblem | null {
  if (!/got 'EOF'/.test(String((error as { message?: unknown })?.message ?? ''))) return null;
  const open: { name: string; index: number }[] = [];
  for (const m of source.matchAll(BLOCK_TAG)) {
    if (m[1] === undefined) continue; // a comment
    if (m[1] !== '/') open.push({ name: m[2]!, index: m.index });
    else if (open.at(-1)?.name === m[2]) open.pop();
  }
  const last = open.at(-1);
  if (!last) return null;
  const before = source.slice(0, last.index);
  const line = before.split('\n').length;
  const column = last.index - (before.lastIndexOf('\n') + 1);
  return problemAt(place, line, column, `syntax error: {{#${last.name}}} is not closed before the template ends`, `close it with {{/${last.name}}}`);
}

/** `{{#if …}}`, `{{^unless}}`, `{{#> partial}}`, `{{#*inline …}}` and `{{/name}}`; comments, to skip them. */
const BLOCK_TAG = /\{\{!--[\s\S]*?--\}\}|\{\{![\s\S]*?\}\}|\{\{~?\s*([#^/])\s*[>*]?\s*([\w.-]+)/g;
