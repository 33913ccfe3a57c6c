/**
 * The templates folder and the journey file as the preview sees them. Unlike `loadContent`, which
 * is all-or-nothing (the daemon must not send from a half-valid folder), the preview keeps
 * whatever loaded: the templates list stays on screen while journeys.yaml has an error, and a
 * broken template shows its problem while the others still render.
 */
import { readdirSync } from 'node:fs';
import { journeyTemplateWarnings, readContent, type ContentSource } from '../content.ts';
import type { Templates } from '../email/templates.ts';
import type { Journey, Stage } from '../journey/types.ts';

export interface PreviewContent {
  /** Goes up by one at every reload: the page asks for a fresh view when it changes. */
  version: number;
  templates: Templates;
  /** Null while the journey file has a problem. */
  journey: Journey | null;
  /** `file:line:column: message`, as `nudge templates check` prints them. */
  problems: string[];
  /** Its warnings (an image without alt text, a locale variant missing), printed the same way. */
  warnings: string[];
  /** Whether stage names in journeys.yaml were checked against the database. */
  stagesChecked: boolean;
}

export function loadPreviewContent(source: ContentSource, stages: readonly Stage[] | null, version: number): PreviewContent {
  // A template that exists but does not compile is its own problem; the steps stay listed meanwhile.
  const { templates, journey, journeyProblems, templateProblems } = readContent(source, stages);
  const warnings = journey ? journeyTemplateWarnings(templates, journey) : [];
  return { version, templates, journey, problems: [...new Set([...journeyProblems, ...templateProblems])], warnings, stagesChecked: stages !== null };
}

// The same file names `loadTemplates` reads as locale variants: `<name>.<locale>.hbs`.
const VARIANT_FILE = /^(.+)\.([A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*)\.hbs$/;

/** Locale tags that have a variant file, per template name (`closing-soon` -> `['de']`). */
export function localeVariants(templatesDir: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let files: string[];
  try {
    files = readdirSync(templatesDir);
  } catch {
    return out;
  }
  for (const file of files.sort()) {
    const m = VARIANT_FILE.exec(file);
    if (!m) continue;
    const list = out.get(m[1]!) ?? [];
    list.push(m[2]!.replace(/_/g, '-'));
    out.set(m[1]!, list);
  }
  return out;
}
