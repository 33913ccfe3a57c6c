/**
 * The bench's own PostgreSQL databases (created and migrated here, dropped at the end), its own
 * Redis key prefix (every key removed at the end), and the engine's Runtime wired to them.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import pg from 'pg';
import { sql } from 'kysely';
import { loadConfig } from '../../src/config.ts';
import { createDb, type Db } from '../../src/db/database.ts';
import { migrateToLatest } from '../../src/db/migrate.ts';
import { silentLogger } from '../../src/logger.ts';
import { Runtime } from '../../src/runtime.ts';
import { REPO } from './settings.ts';

export interface BenchDatabase {
  name: string;
  url: string;
  db: Db;
  drop(): Promise<void>;
}

export function databaseUrl(adminUrl: string, name: string): string {
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

async function admin<T>(adminUrl: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** A new database with the latest schema (then `extraSql`, if any), named `nudge_bench_<label>_<random>`. */
export async function createBenchDatabase(adminUrl: string, label: string, extraSql: string | null = null): Promise<BenchDatabase> {
  const name = `nudge_bench_${label}_${randomBytes(4).toString('hex')}`;
  await admin(adminUrl, (c) => c.query(`create database ${name}`));
  const url = databaseUrl(adminUrl, name);
  const { db } = createDb(url, { max: 10, applicationName: 'nudge-bench' });
  let dropped = false;
  const drop = async () => {
    if (dropped) return;
    dropped = true;
    await db.destroy().catch(() => {});
    await admin(adminUrl, (c) => c.query(`drop database if exists ${name} with (force)`));
  };
  try {
    await migrateToLatest(db);
    if (extraSql) await sql.raw(extraSql).execute(db);
  } catch (error) {
    await drop();
    throw error;
  }
  return { name, url, db, drop };
}

export function benchQueuePrefix(): string {
  return `nudge-bench-${randomBytes(4).toString('hex')}`;
}

/** The same Runtime the commands use, on the bench's database, prefix and SMTP sink. */
export function benchRuntime(databaseUrlText: string, redisUrl: string, prefix: string, smtpUrl: string): Runtime {
  const templatesDir = path.join(REPO, 'templates');
  const config = loadConfig({
    DATABASE_URL: databaseUrlText, REDIS_URL: redisUrl, SMTP_URL: smtpUrl, NUDGE_QUEUE_PREFIX: prefix,
    NUDGE_TEMPLATES_DIR: templatesDir, MAIL_FROM: 'Acme Travel <sales@acme.example>', PUBLIC_URL: 'https://nudge.acme.example',
    NUDGE_SECRET: 'bench-secret-0123456789abcdef',
  });
  return new Runtime(config, silentLogger);
}
