#!/usr/bin/env node
// Runs the TypeScript sources directly (tsx), so `npx nudge` works right after `npm ci`.

// Loading the sources takes a second or so. A SIGTERM or SIGINT meanwhile (a supervisor that
// stops what it just started) finds nothing started: the process says so and exits 0, instead of
// dying of the signal. Once loaded, each command handles its own.
const beforeStart = (signal) => {
  process.stderr.write(`nudge: stopped before starting (${signal})\n`);
  process.exit(0);
};
process.once('SIGTERM', beforeStart);
process.once('SIGINT', beforeStart);
const { register } = await import('tsx/esm/api');
register();
const { main } = await import('../src/cli/main.ts');
process.off('SIGTERM', beforeStart);
process.off('SIGINT', beforeStart);
await main(process.argv);
