import type { Command } from 'commander';
import { loadConfig } from '../config.ts';
import { loadContent } from '../content.ts';
import { createDb } from '../db/database.ts';
import { listStages } from '../db/opportunities.ts';
import type { Stage } from '../journey/types.ts';
import path from 'node:path';
import { EXIT, report } from './shared.ts';

export function registerTemplates(program: Command): void {
  const templates = program.command('templates').description('work with the email templates');
  templates.command('check')
    .description('validate journeys.yaml and every template; exit code 1 with file:line on any error')
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
  const stages = await stagesIfReachable();
  if (!stages) console.error('note: DATABASE_URL is not set or not reachable; stage names in journeys.yaml are not checked');
  const { content, problems } = loadContent(source, stages);
  for (const p of problems) console.log(p);
  if (!content) {
    console.error(`${problems.length} problem${problems.length === 1 ? '' : 's'}`);
    return EXIT.invalid;
  }
  console.log(`ok: ${content.journey.steps.length} steps, ${content.templates.names().length} templates`);
  return EXIT.ok;
}

/** Stage keys from the database when one is configured and answers; null otherwise. */
async function stagesIfReachable(): Promise<Stage[] | null> {
  let url: string;
  try {
    url = loadConfig().databaseUrl;
  } catch {
    return null;
  }
  const { db } = createDb(url, { max: 1 });
  try {
    return await listStages(db);
  } catch {
    return null;
  } finally {
    await db.destroy();
  }
}
