/**
 * Reading typed values out of a parsed YAML document node by node, reporting every problem at the
 * node at fault instead of stopping at the first one. Knows YAML and the value formats of the
 * journey file (times, durations, zones, amounts), not what a journey means.
 *
 * Every reader returns `undefined` after reporting; the caller gives up on the enclosing value but
 * goes on reading its siblings, so one pass finds every problem.
 */
import { isAlias, isMap, isScalar, isSeq } from 'yaml';
import type { Document, LineCounter, Node, Scalar } from 'yaml';
import { isValidTimeZone, parseDuration, parseLocalTime } from './time.ts';
import type { LocalTime } from './types.ts';

/** A problem at a 1-based line and column of the source text. */
export interface NodeProblem {
  line: number;
  column: number;
  message: string;
}

export interface Reader {
  readonly doc: Document;
  readonly lines: LineCounter;
  readonly problems: NodeProblem[];
}

/** Reads the value at `node`, named `path` in messages; undefined when reported invalid. */
export type ValueReader<R extends Reader, T> = (
  r: R,
  node: Node | null,
  path: string,
) => T | undefined;

/** One key of a mapping: the key's node (where "unknown key" points) and the value's. */
export interface Entry {
  key: Scalar;
  value: Node | null;
}

/** The known keys of a mapping, and what was made of the unknown ones. */
export class Entries extends Map<string, Entry> {
  /** How many keys were unknown (each reported). */
  unknown = 0;
  /** Known keys an unknown key was taken for (`templte` -> `template`): not "missing" as well. */
  readonly misspelt = new Set<string>();
}

/** The 1-based line of a node (of the start of the text when there is none). */
export function lineOf(r: Reader, node: Node | null): number {
  return r.lines.linePos(node?.range?.[0] ?? 0).line;
}

export function report(r: Reader, node: Node | null, path: string, message: string): void {
  const { line, col } = r.lines.linePos(node?.range?.[0] ?? 0);
  r.problems.push({ line, column: col, message: path ? `${path}: ${message}` : message });
}

/** `steps[2]` + `trigger` = `steps[2].trigger`. */
export function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

/**
 * Follows an alias (`*name`) to the node it names, so aliases read like what they name. An alias
 * to no anchor stays, to be reported where it is.
 */
function deref(r: Reader, node: unknown): Node | null {
  if (isAlias(node)) return node.resolve(r.doc) ?? node;
  return isScalar(node) || isMap(node) || isSeq(node) ? node : null;
}

/** How a node reads in a message: `"14 days"`, `14`, `a list`. */
export function describe(node: Node | null): string {
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  if (isAlias(node)) return `*${node.source}, an alias to no anchor`;
  if (!isScalar(node) || node.value === null || node.value === undefined) return 'nothing';
  return typeof node.value === 'string' ? JSON.stringify(node.value) : String(node.value);
}

/** Whether the value is absent or written as null (`key:`, `key: null`, `key: ~`). */
export function isNull(node: Node | null): node is Scalar<null> | null {
  return node === null || (isScalar(node) && node.value === null);
}

/**
 * The entries of a mapping, by key. Reports a node that is not a mapping, and every key not in
 * `known` (suggesting the nearest known key); unknown keys are left out of the result.
 */
export function readMap(
  r: Reader,
  node: Node | null,
  path: string,
  known: readonly string[],
): Entries | undefined {
  if (!isMap(node)) {
    report(r, node, path, `expected a mapping (key: value), found ${describe(node)}`);
    return undefined;
  }
  const entries = new Entries();
  for (const pair of node.items) {
    const key = isScalar(pair.key) ? pair.key : null;
    const name = key === null ? describe(deref(r, pair.key)) : String(key.value);
    if (key === null || !known.includes(name)) {
      const near = nearest(name, known);
      const where = path ? 'unknown key' : 'unknown top-level key';
      const hint = near ? ` (did you mean "${near}"?)` : ` (expected ${orList(known)})`;
      report(r, key ?? node, path, `${where} ${JSON.stringify(name)}${hint}`);
      entries.unknown++;
      if (near) entries.misspelt.add(near);
    } else {
      entries.set(name, { key, value: deref(r, pair.value) });
    }
  }
  return entries;
}

export interface Fields<R extends Reader> {
  /** `fallback` when the key is absent; undefined (reported) when its value is invalid. */
  optional<T>(key: string, fallback: T, read: ValueReader<R, T>): T | undefined;
  /** Undefined when the key is absent (reported at the mapping) or its value is invalid. */
  required<T>(key: string, read: ValueReader<R, T>): T | undefined;
}

/** Typed access to the entries of the mapping `node`, named `path`. */
export function fields<R extends Reader>(
  r: R,
  entries: Entries,
  node: Node,
  path: string,
): Fields<R> {
  return {
    optional(key, fallback, read) {
      const entry = entries.get(key);
      return entry === undefined ? fallback : read(r, entry.value, join(path, key));
    },
    required(key, read) {
      const entry = entries.get(key);
      if (entry) return read(r, entry.value, join(path, key));
      if (!entries.misspelt.has(key)) report(r, node, path, `missing "${key}"`);
      return undefined;
    },
  };
}

/** `a, b or c`. */
export function orList(words: readonly string[]): string {
  return words.length <= 1 ? words.join('') : `${words.slice(0, -1).join(', ')} or ${words.at(-1)}`;
}

/** ` (did you mean "x"?)` when a candidate is within edit distance 2 of `word`, else `''`. */
export function didYouMean(word: string, candidates: Iterable<string>): string {
  const near = nearest(word, candidates);
  return near === null ? '' : ` (did you mean ${JSON.stringify(near)}?)`;
}

/** The candidate nearest to `word` (ignoring case) within edit distance 2; the first on a tie. */
function nearest(word: string, candidates: Iterable<string>): string | null {
  let best: string | null = null;
  let bestDistance = 3;
  for (const candidate of candidates) {
    const d = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return best;
}

/** Levenshtein distance. */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current[j] = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution);
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/** The items of a list. */
export function readList(
  r: Reader,
  node: Node | null,
  path: string,
): Array<Node | null> | undefined {
  if (isSeq(node)) return node.items.map((item) => deref(r, item));
  report(r, node, path, `expected a list, found ${describe(node)}`);
  return undefined;
}

export function readString(r: Reader, node: Node | null, path: string): string | undefined {
  if (isScalar(node) && typeof node.value === 'string') return node.value;
  const quote =
    isScalar(node) && (typeof node.value === 'number' || typeof node.value === 'boolean')
      ? ` (write it in quotes: "${String(node.value)}")`
      : '';
  report(r, node, path, `expected text, found ${describe(node)}${quote}`);
  return undefined;
}

/** One of `words`, exactly. */
export function oneOf<W extends string>(words: readonly W[]): ValueReader<Reader, W> {
  return (r, node, path) => {
    const text = isScalar(node) && typeof node.value === 'string' ? node.value : null;
    const word = words.find((w) => w === text);
    if (word !== undefined) return word;
    const hint = text === null ? '' : didYouMean(text, words);
    report(r, node, path, `expected ${orList(words)}, found ${describe(node)}${hint}`);
    return undefined;
  };
}

export function readBoolean(r: Reader, node: Node | null, path: string): boolean | undefined {
  if (isScalar(node) && typeof node.value === 'boolean') return node.value;
  report(r, node, path, `expected true or false, found ${describe(node)}`);
  return undefined;
}

/** A number (not a quoted one) from `min` to `max`. */
export function numberFrom(min: number, max: number): ValueReader<Reader, number> {
  return (r, node, path) => {
    const value = isScalar(node) ? node.value : undefined;
    if (typeof value === 'number' && value >= min && value <= max) return value;
    report(r, node, path, `expected a number from ${min} to ${max}, found ${describe(node)}`);
    return undefined;
  };
}

/** A whole number of at least `min`. */
export function wholeNumber(min: number, max: number): ValueReader<Reader, number> {
  return (r, node, path) => {
    const value = isScalar(node) ? node.value : undefined;
    if (typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max) return value;
    report(r, node, path, `expected a whole number from ${min} to ${max}, found ${describe(node)}`);
    return undefined;
  };
}

/** `HH:MM`, 24-hour. */
export function readTime(r: Reader, node: Node | null, path: string): LocalTime | undefined {
  const time = isScalar(node) && typeof node.value === 'string' ? parseLocalTime(node.value) : null;
  if (time) return time;
  const expected = 'a time of day "HH:MM" (24-hour, e.g. "09:00")';
  report(r, node, path, `expected ${expected}, found ${describe(node)}`);
  return undefined;
}

/** A year and a day: longer spans are typing mistakes, and would overflow date arithmetic. */
const LONGEST_DURATION = 366 * 1440;

/** `<number><unit>`, unit m, h or d, as minutes; at least `min` minutes, at most 366 days. */
export function duration(min: number): ValueReader<Reader, number> {
  return (r, node, path) => {
    const text = isScalar(node) && typeof node.value === 'string' ? node.value : '';
    const minutes = parseDuration(text);
    if (minutes !== null && minutes >= min && minutes <= LONGEST_DURATION) return minutes;
    const expected = minutes === null ? 'a whole number then m, h or d, e.g. "24h"' : minutes < min ? 'more than 0' : 'at most 366d';
    report(r, node, path, `expected a duration of ${expected}, found ${describe(node)}`);
    return undefined;
  };
}

/** An IANA time-zone name this runtime knows. */
export function readTimeZone(r: Reader, node: Node | null, path: string): string | undefined {
  const zone = readString(r, node, path);
  if (zone === undefined || isValidTimeZone(zone)) return zone;
  const expected = 'expected an IANA name such as "Europe/Brussels"';
  report(r, node, path, `unknown time zone ${describe(node)} (${expected})`);
  return undefined;
}

const DECIMAL = /^\d+(?:\.\d+)?$/;
const EXPONENT = /^(\d+)(?:\.(\d+))?e([+-]?\d+)$/;

/**
 * A number >= 0, or a decimal string (`"1000.50"`), as a canonical decimal string with no exponent
 * and at most 6 decimals: `1e3` -> `"1000"`, `"0100.50"` -> `"100.5"`.
 */
export function readDecimal(r: Reader, node: Node | null, path: string): string | undefined {
  const value = isScalar(node) ? node.value : undefined;
  let text: string | null = null;
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0) {
    text = plain(String(value));
  }
  if (typeof value === 'string' && DECIMAL.test(value)) text = canonical(value);
  if (text !== null && (text.split('.')[1] ?? '').length <= 6) return text;
  const expected = 'an amount >= 0 with at most 6 decimals, e.g. 1000 or "1000.50"';
  report(r, node, path, `expected ${expected}, found ${describe(node)}`);
  return undefined;
}

/** Writes JavaScript's `1e+21` or `1.5e-7` without the exponent. */
function plain(text: string): string {
  const m = EXPONENT.exec(text);
  if (!m) return canonical(text);
  const whole = m[1] ?? '';
  const digits = whole + (m[2] ?? '');
  const point = whole.length + Number(m[3]);
  const padded = point <= 0 ? '0'.repeat(1 - point) + digits : digits.padEnd(point, '0');
  const at = Math.max(point, 1);
  return canonical(`${padded.slice(0, at)}.${padded.slice(at)}`);
}

/** Drops leading zeros of the whole part and trailing zeros of the fraction. */
function canonical(text: string): string {
  const [whole = '', fraction = ''] = text.split('.');
  const w = whole.replace(/^0+(?=\d)/, '');
  const f = fraction.replace(/0+$/, '');
  return f ? `${w}.${f}` : w;
}
