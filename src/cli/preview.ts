import type { Command } from 'commander';
import { systemClock } from '../clock.ts';
import { ConfigError, loadConfig, type Config } from '../config.ts';
import { createDb, type Db } from '../db/database.ts';
import { listStages } from '../db/opportunities.ts';
import { createLogger } from '../logger.ts';
import { EXIT, report, UsageError, wholeNumber } from './shared.ts';
import { takeOverSignals } from '../early-signals.ts';

export function registerPreview(program: Command): void {
  program.command('preview')
    .description('serve the marketers\' preview page: steps, templates, each email at desktop and phone widths with its text and headers, the simulate calendar and the forecast; updates itself when a file is saved')
    .option('--port <n>', 'port to listen on (default: PORT, else 3000; 0 picks a free port)')
    .option('--host <address>', 'address to listen on; the page shows customer data, so only this machine by default', '127.0.0.1')
    .action(async (opts: { port?: string; host: string }) => {
      try {
        process.exitCode = await preview(opts);
      } catch (error) {
        process.exitCode = report(error);
      }
    });
}

async function preview(opts: { port?: string; host: string }): Promise<number> {
  const config = previewConfig(process.env);
  const port = opts.port === undefined ? config.port : wholeNumber(opts.port, '--port', 0, 65535);
  // Loaded here, not at the top: the other commands need not load fastify and chokidar.
  const { startPreviewServer } = await import('../preview/server.ts');
  const { watchContent } = await import('../preview/watch.ts');
  const logger = createLogger({ level: config.logLevel ?? 'info', format: config.logFormat, name: 'nudge-preview' });
  const db: Db | null = config.databaseUrl ? createDb(config.databaseUrl, { max: 4, applicationName: 'nudge-preview', preparedStatements: config.preparedStatements }).db : null;
  if (!db) console.error('note: DATABASE_URL is not set: previewing with the built-in sample opportunity; no calendar or forecast');
  const stages = async () => (db ? listStages(db).catch(() => null) : null);
  const content = await watchContent(config, stages, logger);
  const settings = { mailFrom: config.mailFrom, publicUrl: config.publicUrl, secret: config.secret };
  const server = await startPreviewServer({ content, db, settings, clock: systemClock, logger }, { host: opts.host, port })
    .catch(async (error: unknown) => {
      await content.close();
      await db?.destroy();
      if ((error as { code?: string }).code === 'EADDRINUSE') throw new UsageError(`port ${port} is in use: choose another with --port`);
      throw error;
    });
  // The one line of stdout: scripts and tests read the address from it.
  console.log(`nudge preview: ${server.url}`);
  logger.info({ host: opts.host, port: new URL(server.url).port }, 'preview listening');
  await stopSignal();
  await server.close();
  await content.close();
  await db?.destroy();
  return EXIT.ok;
}

/**
 * The configuration of a command that sends nothing, except that the preview needs no database
 * either: without DATABASE_URL it shows the sample opportunity. Every variable set is validated
 * as for every command.
 */
function previewConfig(env: NodeJS.ProcessEnv): Omit<Config, 'databaseUrl'> & { databaseUrl: string | null } {
  try {
    return loadConfig(env, { sends: false });
  } catch (error) {
    if (!(error instanceof ConfigError) || env.DATABASE_URL?.trim()) throw error;
    // A stand-in that is never connected to, so the other variables are checked the same way
    // (and their problems, if any, said without DATABASE_URL's).
    return { ...loadConfig({ ...env, DATABASE_URL: 'postgres://unset.invalid/none' }, { sends: false }), databaseUrl: null };
  }
}

function stopSignal(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
    takeOverSignals();
  });
}
