/**
 * One test file's world: its own database, queue prefix, SMTP sink and templates folder, and the
 * engine wired to them in-process (the same Runtime the commands use). `tick` and `drain` do what
 * `nudge tick --now` and `nudge work --drain --now` do.
 */
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { fixedClock } from '../../src/clock.ts';
import { loadConfig, type Config } from '../../src/config.ts';
import { LiveContent } from '../../src/content.ts';
import { listStages } from '../../src/db/opportunities.ts';
import { silentLogger } from '../../src/logger.ts';
import { Runtime } from '../../src/runtime.ts';
import { runScan, type ScanSummary } from '../../src/scan.ts';
import { drain, type DrainTotals } from '../../workers/drain.ts';
import { createTestDatabase, type TestDatabase } from './database.ts';
import { REDIS_URL } from './env.ts';
import { removeQueueKeys, testQueuePrefix } from './queue.ts';
import { startSmtpSink, type SmtpSink } from './smtp-sink.ts';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface World {
  database: TestDatabase;
  smtp: SmtpSink;
  prefix: string;
  templatesDir: string;
  env: Record<string, string>;
  rt: Runtime;
  /** Writes a file into the templates folder (journeys.yaml, a template, a partial). */
  write(relative: string, text: string): void;
  /** Between tests: no rows but the stages, no jobs, an empty SMTP sink that accepts everything. */
  reset(): Promise<void>;
  tick(nowIso: string): Promise<ScanSummary>;
  drain(nowIso: string): Promise<DrainTotals>;
  close(): Promise<void>;
}

export interface WorldOptions {
  /** Copy the shipped templates/ (default) or start from an empty folder. */
  shippedTemplates?: boolean;
  env?: Record<string, string>;
}

export async function createWorld(options: WorldOptions = {}): Promise<World> {
  const database = await createTestDatabase();
  const smtp = await startSmtpSink();
  const prefix = testQueuePrefix();
  const templatesDir = mkdtempSync(path.join(os.tmpdir(), 'nudge-templates-'));
  if (options.shippedTemplates ?? true) cpSync(path.join(REPO, 'templates'), templatesDir, { recursive: true });
  const env: Record<string, string> = {
    DATABASE_URL: database.url, REDIS_URL, SMTP_URL: smtp.url, NUDGE_QUEUE_PREFIX: prefix,
    NUDGE_TEMPLATES_DIR: templatesDir, MAIL_FROM: 'Acme Travel <sales@acme.test>', PUBLIC_URL: 'https://nudge.acme.test',
    NUDGE_SECRET: 'test-secret-0123456789abcdef', NUDGE_RETRY_BASE_MS: '200', NUDGE_CONCURRENCY: '4',
    ...options.env,
  };
  const config: Config = loadConfig(env);
  const rt = new Runtime(config, silentLogger);
  return {
    database, smtp, prefix, templatesDir, env, rt,
    write(relative, text) {
      writeFileSync(path.join(templatesDir, relative), text);
    },
    async reset() {
      smtp.received.length = 0;
      smtp.refuse(null);
      smtp.refuseSender(null);
      smtp.dropAfterData(false);
      smtp.stall(false);
      await sql`truncate deliveries, activities, opportunity_contacts, opportunities, contacts restart identity cascade`.execute(database.db);
      await rt.queue.obliterate({ force: true });
    },
    async tick(nowIso) {
      const { journey } = await rt.content();
      return runScan(rt.scanDeps(journey), new Date(nowIso));
    },
    async drain(nowIso) {
      const content = new LiveContent(await rt.content(), config, () => listStages(rt.db), rt.logger);
      const mailer = rt.mailer();
      try {
        return await drain(rt, { clock: fixedClock(nowIso), content, mailer });
      } finally {
        await mailer.close();
      }
    },
    async close() {
      await rt.close();
      await smtp.close();
      await database.drop();
      await removeQueueKeys(prefix);
      rmSync(templatesDir, { recursive: true, force: true });
    },
  };
}
