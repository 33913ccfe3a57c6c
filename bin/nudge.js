#!/usr/bin/env node
// Runs the TypeScript sources directly (tsx), so `npx nudge` works right after `npm ci`.
import { constants } from 'node:os';

// Loading the sources takes a second or so. A SIGTERM or SIGINT meanwhile (a supervisor that
// stops what it just started) finds nothing started: the process says so and exits 0, instead of
// dying of the signal. These handlers stay until a command that stops on a signal in its own way
// (start, work, preview) has installed its handlers and takes over (src/early-signals.ts): removed
// earlier, they would leave a moment with no handler, and a signal caught while the sources were
// being evaluated, not yet handed to a handler, would be dropped with the last one. A command
// without handlers of its own ends as the signal would end it (exit code 128 + its number).
let loaded = false;
const early = (signal) => {
  if (loaded) process.exit(128 + constants.signals[signal]);
  process.stderr.write(`nudge: stopped before starting (${signal})\n`);
  process.exit(0);
};
process.on('SIGTERM', early);
process.on('SIGINT', early);
globalThis[Symbol.for('nudge.earlySignals')] = () => {
  process.off('SIGTERM', early);
  process.off('SIGINT', early);
};
const { register } = await import('tsx/esm/api');
register();
// Registered after tsx's, so it runs first: a few dependencies from their CommonJS builds, which
// start faster under module hooks (bin/commonjs-builds.js).
(await import('node:module')).register('./commonjs-builds.js', import.meta.url);
const { main } = await import('../src/cli/main.ts');
loaded = true;
await main(process.argv);
