/**
 * What marketers edit: the journey file and the templates, loaded and validated together.
 * `LiveContent` keeps the last good version while the daemon runs: an edit that breaks either
 * is reported and ignored until it is fixed.
 */
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { checkTemplates, formatProblem, loadTemplates, templateWarnings, unusedTemplateProblems, type Templates, type TemplateUsage } from './email/templates.ts';
import { formatJourneyProblem, loadJourneysFile, type JourneyRules, type UnsupportedFeature } from './journey/load-journeys.ts';
import type { Journey, Stage } from './journey/types.ts';
import type { Logger } from './logger.ts';

/** Journey features not built yet: refused when a journey file uses them (none at the moment). */
export const UNSUPPORTED: ReadonlySet<UnsupportedFeature> = new Set<UnsupportedFeature>([]);

export interface Content {
  journey: Journey;
  templates: Templates;
}

export interface ContentSource {
  journeysFile: string;
  templatesDir: string;
}

/** Loads and checks both; returns every problem as `file:line:column: message` lines. */
export function loadContent(source: ContentSource, stages: readonly Stage[] | null): { content: Content | null; problems: string[] } {
  const { templates, journey, journeyProblems, templateProblems } = readContent(source, stages);
  const problems = [...new Set([...journeyProblems, ...templateProblems])];
  return { content: journey && problems.length === 0 ? { journey, templates } : null, problems };
}

/**
 * The journey, for what reads it and renders nothing (explain, forecast, simulate): null when the
 * journey file has problems (`journeyProblems`); a template that does not compile leaves it
 * usable, and is among `templateProblems`.
 */
export function loadJourneyAlone(source: ContentSource, stages: readonly Stage[] | null): { journey: Journey | null; journeyProblems: string[]; templateProblems: string[] } {
  const { journey, journeyProblems, templateProblems } = readContent(source, stages);
  return { journey: journeyProblems.length === 0 ? journey : null, journeyProblems, templateProblems };
}

/**
 * Both files read, nothing refused: the templates, the journey when it parsed (it loads while a
 * template it names does not compile, so the others are checked too), and each side's problems.
 */
export function readContent(source: ContentSource, stages: readonly Stage[] | null) {
  const loaded = loadTemplates(source.templatesDir);
  const { templates } = loaded;
  const { journey, problems } = loadJourneysFile(source.journeysFile, journeyRules(templates, stages));
  const templateProblems = loaded.problems.map((p) => formatProblem(p));
  if (journey) templateProblems.push(...journeyTemplateProblems(templates, journey));
  return { templates, journey, journeyProblems: problems.map(formatJourneyProblem), templateProblems: [...new Set(templateProblems)] };
}

/** Each step's template and who receives it: what the templates are checked for. */
export function templateUsages(journey: Journey): TemplateUsage[] {
  return journey.steps.map((s) => ({ template: s.template, stepId: s.id, audience: s.to.kind === 'owner' ? 'owner' : 'customer' }));
}

/** What `templates check` warns of (images without alt, missing locale variants), as `file:line:column: warning: …` lines. */
export function journeyTemplateWarnings(templates: Templates, journey: Journey): string[] {
  return templateWarnings(templates, templateUsages(journey)).map((p) => formatProblem(p));
}

/** The templates' problems, as `file:line:column: message` lines: those the steps use, for their recipients, then the others. */
export function journeyTemplateProblems(templates: Templates, journey: Journey): string[] {
  const usages = templateUsages(journey);
  return [...checkTemplates(templates, usages), ...unusedTemplateProblems(templates, usages)].map((p) => formatProblem(p));
}

/**
 * What journeys.yaml is checked against. A step's template exists when its file does: a file that
 * does not compile is reported once, as its own problem, and the journey still loads so that the
 * other templates are checked in the same run (the content is refused all the same).
 */
export function journeyRules(templates: Templates, stages: readonly Stage[] | null): JourneyRules {
  return {
    stages: stages && stages.map((s) => ({ key: s.key, outcome: s.outcome })),
    templateExists: (name) => templates.names().includes(name),
    unsupported: UNSUPPORTED,
  };
}

/** Content that reloads itself when a file changes, keeping the last good version. */
export class LiveContent {
  private fingerprint: string;
  private lastProblems = '';

  constructor(
    private current: Content,
    private readonly source: ContentSource,
    private readonly stages: () => Promise<readonly Stage[]>,
    private readonly logger: Logger,
  ) {
    this.fingerprint = fingerprintOf(source);
  }

  get journey(): Journey {
    return this.current.journey;
  }

  get templates(): Templates {
    return this.current.templates;
  }

  /** Re-reads the files when any changed since the last look. Never throws for bad content. */
  async refresh(): Promise<void> {
    const fingerprint = fingerprintOf(this.source);
    if (fingerprint === this.fingerprint) return;
    this.fingerprint = fingerprint;
    const { content, problems } = loadContent(this.source, await this.stages());
    if (content) {
      this.current = content;
      this.lastProblems = '';
      this.logger.info({ steps: content.journey.steps.length }, 'journey and templates reloaded');
      return;
    }
    const text = problems.join('\n');
    if (text !== this.lastProblems) this.logger.error({ problems }, 'edited journey or templates are invalid; keeping the last good version');
    this.lastProblems = text;
  }
}

/** Names, sizes and modification times of every file involved: cheap to compute every few seconds. */
function fingerprintOf(source: ContentSource): string {
  const parts: string[] = [];
  const visit = (file: string) => {
    try {
      const st = statSync(file);
      if (st.isDirectory()) {
        for (const name of readdirSync(file).sort()) visit(path.join(file, name));
      } else {
        parts.push(`${file}:${st.size}:${st.mtimeMs}`);
      }
    } catch {
      parts.push(`${file}:missing`);
    }
  };
  visit(source.journeysFile);
  visit(source.templatesDir);
  return parts.join('|');
}
