/**
 * Reads the HTML tags of Handlebars source, without rendering it: element names and attributes
 * with their offsets, so the linter can point at `href="http://..."` or an `<img>` in the file.
 * `{{...}}` inside a tag or an attribute value is kept as written (and may contain quotes and
 * `>`); Handlebars and HTML comments are skipped.
 */

export interface ScannedAttribute {
  /** Lower-case. */
  name: string;
  /** As written, without the quotes; null for a bare attribute (`<input disabled>`). */
  value: string | null;
  /** Offset of the attribute name in the source. */
  offset: number;
}

export interface ScannedTag {
  /** Lower-case element name. */
  name: string;
  /** Offset of the `<`. */
  offset: number;
  attributes: ScannedAttribute[];
}

const COMMENTS = /\{\{~?!--[\s\S]*?--~?\}\}|\{\{~?![\s\S]*?\}\}|<!--[\s\S]*?-->/g;

/** Every start tag of `source`, in order. */
export function scanTags(source: string): ScannedTag[] {
  // Same length, same line breaks: offsets in the masked text are offsets in the source.
  const text = source.replace(COMMENTS, (c) => c.replace(/[^\n]/g, ' '));
  const tags: ScannedTag[] = [];
  const start = /<([a-zA-Z][\w:-]*)/g;
  for (let m = start.exec(text); m; m = start.exec(text)) {
    const { attributes, end } = readAttributes(text, m.index + m[0].length);
    tags.push({ name: m[1]!.toLowerCase(), offset: m.index, attributes });
    start.lastIndex = end;
  }
  return tags;
}

/** Attributes from `i` to the tag's closing `>`; `end` is just after it (or the text's end). */
function readAttributes(text: string, i: number): { attributes: ScannedAttribute[]; end: number } {
  const attributes: ScannedAttribute[] = [];
  while (i < text.length) {
    const c = text[i]!;
    if (c === '>') return { attributes, end: i + 1 };
    if (/[\s/]/.test(c)) {
      i += 1;
    } else if (text.startsWith('{{', i)) {
      i = skipMustache(text, i);
    } else {
      const name = /^[^\s=>/"'{]+/.exec(text.slice(i, i + 200))?.[0] ?? c;
      const offset = i;
      i += name.length;
      const eq = /^\s*=\s*/.exec(text.slice(i, i + 100));
      let value: string | null = null;
      if (eq) {
        i += eq[0].length;
        const read = readValue(text, i);
        value = read.value;
        i = read.end;
      }
      attributes.push({ name: name.toLowerCase(), value, offset });
    }
  }
  return { attributes, end: i };
}

function readValue(text: string, i: number): { value: string; end: number } {
  const quote = text[i] === '"' || text[i] === "'" ? text[i]! : null;
  let j = quote ? i + 1 : i;
  while (j < text.length) {
    if (text.startsWith('{{', j)) {
      j = skipMustache(text, j);
      continue;
    }
    const c = text[j]!;
    if (quote ? c === quote : /[\s>]/.test(c)) break;
    j += 1;
  }
  const value = text.slice(quote ? i + 1 : i, j);
  return { value, end: quote && j < text.length ? j + 1 : j };
}

function skipMustache(text: string, i: number): number {
  const close = text.indexOf('}}', i + 2);
  if (close < 0) return text.length;
  return text[close + 2] === '}' ? close + 3 : close + 2;
}

/** 1-based line and 0-based column of `offset` (Handlebars' convention, for `problemAt`). */
export function positionOf(source: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = source.indexOf('\n'); i >= 0 && i < offset; i = source.indexOf('\n', i + 1)) {
    line += 1;
    lineStart = i + 1;
  }
  return { line, column: offset - lineStart };
}
