/**
 * Once per test run: a template database migrated to the latest schema, named after a hash of
 * the migrations, so each test file can clone its own database in milliseconds.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { createDb } from '../../src/db/database.ts';
import { MIGRATIONS_DIR, migrateToLatest } from '../../src/db/migrate.ts';
import { databaseUrl, PG_ADMIN_URL } from './env.ts';

export function templateDatabaseName(): string {
  const hash = createHash('sha256');
  for (const f of readdirSync(MIGRATIONS_DIR).sort()) hash.update(f).update(readFileSync(path.join(MIGRATIONS_DIR, f)));
  return `nudge_tpl_${hash.digest('hex').slice(0, 12)}`;
}

/**
 * Templates of older migrations, and builds that an interrupted run left behind (older than an
 * hour: a build under way elsewhere is younger). One in use is left alone.
 */
async function dropStaleTemplates(admin: pg.Client, current: string): Promise<void> {
  const { rows } = await admin.query<{ datname: string }>(
    `select datname from pg_database where datname like 'nudge\\_tpl\\_%' and datname <> $1
       and (datname not like '%\\_build\\_%' or (pg_stat_file('base/' || oid || '/PG_VERSION')).modification < now() - interval '1 hour')`,
    [current],
  );
  for (const { datname } of rows) {
    await admin.query(`drop database if exists ${pg.escapeIdentifier(datname)}`).catch(() => {});
  }
}

export default async function setup(): Promise<void> {
  const name = templateDatabaseName();
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  try {
    await dropStaleTemplates(admin, name);
    const exists = await admin.query('select 1 from pg_database where datname = $1', [name]);
    if (exists.rowCount) return;
    // Built under a temporary name and renamed, so a half-built template is never used.
    const building = `${name}_build_${process.pid}`;
    await admin.query(`drop database if exists ${building}`);
    await admin.query(`create database ${building}`);
    const { db } = createDb(databaseUrl(building), { max: 1 });
    await migrateToLatest(db);
    await db.destroy();
    await admin.query(`alter database ${building} rename to ${name}`).catch(async (error) => {
      await admin.query(`drop database if exists ${building}`);
      if ((error as { code?: string }).code !== '42P04') throw error;
    });
  } finally {
    await admin.end();
  }
}
