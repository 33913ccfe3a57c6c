import type { Command } from 'commander';
import { ensureDatabase, migrateToLatest } from '../db/migrate.ts';
import { withRuntime } from './shared.ts';

export function registerMigrate(program: Command): void {
  program.command('migrate')
    .description('bring the database schema up to date (creates the database if missing); safe to run again')
    .action(() => withRuntime(async (rt) => {
      if (await ensureDatabase(rt.config.databaseUrl)) console.log('created the database');
      const { results } = await migrateToLatest(rt.db);
      for (const r of results ?? []) console.log(`${r.status === 'Success' ? 'applied' : r.status}: ${r.migrationName}`);
      console.log(results?.length ? 'schema is up to date' : 'schema was already up to date');
    }, { sends: false }));
}
