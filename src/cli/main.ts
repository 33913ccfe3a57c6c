/** The `nudge` command line: one file per command, parsing only. */
import { readFileSync } from 'node:fs';
import { parseEnv } from 'node:util';
import { Command } from 'commander';
import { letClosedConnectionsGo } from '../closed-connections.ts';
import { registerExplain } from './explain.ts';
import { registerForecast } from './forecast.ts';
import { registerMigrate } from './migrate.ts';
import { registerPreview } from './preview.ts';
import { registerSeed } from './seed.ts';
import { registerSendTest } from './send-test.ts';
import { registerSimulate } from './simulate.ts';
import { registerStart } from './start.ts';
import { registerTemplates } from './templates.ts';
import { registerTick } from './tick.ts';
import { registerWork } from './work.ts';

export async function main(argv: string[]): Promise<void> {
  // A reader that stops early (`nudge forecast | head -1`) wants no more output: what the command
  // still prints goes nowhere, and it ends as it would have, its work done and with its own exit
  // code, rather than with a stack trace. (Logs go to stderr: a daemon writes nothing here.)
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
    process.stdout.write = (() => true) as typeof process.stdout.write;
  });
  loadDotEnv();
  letClosedConnectionsGo();
  const program = new Command('nudge')
    .description('Journey emails for CRM sales opportunities, driven by closing dates and stages, exactly once.')
    .showHelpAfterError()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  for (const register of [registerMigrate, registerSeed, registerStart, registerTick, registerWork, registerExplain, registerSimulate, registerForecast, registerTemplates, registerPreview, registerSendTest]) {
    register(program);
  }
  program.exitOverride((err) => {
    process.exit(err.exitCode === 0 ? 0 : 1);
  });
  await program.parseAsync(argv);
  // Done: the command printed its result and closed what it opened (a daemon, once stopped). A
  // handle a library leaves open must not keep the process alive: a BullMQ worker closed while
  // Redis was gone keeps its timers.
  setTimeout(() => process.exit(), LINGER_MS).unref();
}

/** How long a finished command may take to let go of its last handles before it exits anyway. */
const LINGER_MS = 1_000;

/** A `.env` file in the working directory, when there is one; real environment variables win. */
function loadDotEnv(): void {
  let text: string;
  try {
    text = readFileSync('.env', 'utf8');
  } catch {
    return; // No .env: the environment alone configures Nudge.
  }
  for (const [key, value] of Object.entries(parseEnv(text))) {
    if (process.env[key] === undefined) process.env[key] = value;
  }
}
