import path from 'node:path';
import type { Command } from 'commander';
import { loadConfig } from '../config.ts';
import { journeyRules, journeyTemplateWarnings, loadContent, type Content, type ContentSource } from '../content.ts';
import { createDb } from '../db/database.ts';
import { listStages } from '../db/opportunities.ts';
import { publicUrlWarning } from '../email/lint.ts';
import { loadTemplates } from '../email/templates.ts';
import { loadJourneysFile } from '../journey/load-journeys.ts';
import type { Journey, Stage } from '../journey/types.ts';
import { EXIT, report } from './shared.ts';

export function registerTemplates(program: Command): void {
  const templates = program.command('templates').description('work with the email templates');
  templates.command('check')
    .description('validate journeys.yaml and every template: file:line:column: problem (fix: hint); exit code 1 on any error, warnings print but exit 0')
    .action(async () => {
      try {
        process.exitCode = await check();
      } catch (error) {
        process.exitCode = report(error);
      }
    });
}

async function check(): Promise<number> {
  const env = process.env;
  const templatesDir = path.resolve(env.NUDGE_TEMPLATES_DIR?.trim() || 'templates');
  const source = { templatesDir, journeysFile: path.resolve(env.NUDGE_JOURNEYS?.trim() || path.join(templatesDir, 'journeys.yaml')) };
  const read = await stagesIfConfigured();
  if ('unchecked' in read) console.error(`note: stage names in journeys.yaml are not checked: ${read.unchecked}`);
  const { content, problems } = loadContent(source, 'stages' in read ? read.stages : null);
  const warnings = warningsOf(source, content);
  const publicUrl = publicUrlWarning(env.PUBLIC_URL, env.PORT?.trim() || '3000');
  if (publicUrl) warnings.push(publicUrl);
  for (const p of [...problems, ...warnings]) console.log(p);
  const counted = warnings.length ? `, ${plural(warnings.length, 'warning')}` : '';
  if (!content) {
    console.error(`${plural(problems.length, 'error')}${counted}`);
    return EXIT.invalid;
  }
  console.log(`ok: ${content.journey.steps.length} steps, ${content.templates.names().length} templates${counted}`);
  return EXIT.ok;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** Warnings (images without alt, missing locale variants): read even when there are errors. */
function warningsOf(source: ContentSource, content: Content | null): string[] {
  const templates = content?.templates ?? loadTemplates(source.templatesDir).templates;
  const journey: Journey | null = content?.journey
    ?? loadJourneysFile(source.journeysFile, journeyRules(templates, null)).journey;
  if (!journey) return [];
  return journeyTemplateWarnings(templates, journey);
}

/**
 * Stage keys from the database, or why they are not read. Without DATABASE_URL (a marketer's
 * checkout) the templates are checked alone. With it, the configuration is loaded as every
 * command loads it: a bad variable stops the check (exit 2, naming it), and a database that cannot
 * be read is named with PostgreSQL's error.
 */
async function stagesIfConfigured(): Promise<{ stages: Stage[] } | { unchecked: string }> {
  if (!process.env.DATABASE_URL?.trim()) return { unchecked: 'DATABASE_URL is not set' };
  const { db } = createDb(loadConfig(process.env, { sends: false }).databaseUrl, { max: 1 });
  try {
    return { stages: await listStages(db) };
  } catch (error) {
    const e = error as { code?: string; message?: string };
    const hint = e.code === '42P01' || e.code === '3D000' ? ' (run `nudge migrate`)' : '';
    return { unchecked: `the database at DATABASE_URL cannot be read${hint}: ${e.message ?? String(error)}` };
  } finally {
    await db.destroy();
  }
}
