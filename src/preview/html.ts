/**
 * HTML that escapes by default. Everything the preview page shows passes through `html`: an
 * interpolated value is escaped for text and attributes alike (`& < > " '`) unless it is already
 * `Html` built the same way. Titles, addresses and template output are hostile until proven safe.
 */

/** A piece of markup that was built by `html` (or deliberately trusted with `trusted`). */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for an HTML text node or a quoted attribute value. */
export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}

type Interpolation = Html | string | number | null | undefined | false | readonly Interpolation[];

function piece(value: Interpolation): string {
  if (value === null || value === undefined || value === false) return '';
  if (value instanceof Html) return value.text;
  if (Array.isArray(value)) return value.map(piece).join('');
  return escapeHtml(String(value));
}

/** Tagged template: `html\`<p title="${title}">${title}</p>\`` escapes both uses of `title`. */
export function html(strings: TemplateStringsArray, ...values: Interpolation[]): Html {
  let out = strings[0]!;
  values.forEach((value, i) => {
    out += piece(value) + strings[i + 1]!;
  });
  return new Html(out);
}

/** Markup written in this codebase (inline CSS and script), never data. */
export function trusted(text: string): Html {
  return new Html(text);
}
