// Module hooks of slow-load.mjs (they run on node's loader thread). The load held is that of
// src/cli/main.ts, or of SLOW_LOAD_MODULE (a path from the repository's root). With
// SLOW_LOAD_BUSY_MS, the evaluation of src/cli/main.ts itself is held instead (a synchronous
// stretch on the main thread, as evaluating the sources is), saying so first and when it is over.
import { writeSync } from 'node:fs';

const busyMs = Number(process.env.SLOW_LOAD_BUSY_MS ?? 0);
const held = process.env.SLOW_LOAD_MODULE ?? 'src/cli/main.ts';

export async function resolve(specifier, context, next) {
  if (!busyMs && specifier.endsWith(`/${held}`)) {
    writeSync(2, `test: holding the load of ${held}\n`);
    // Longer than a loaded machine takes to hand the line to the test and the test to send its
    // SIGTERM, which ends the process either way.
    await new Promise((r) => setTimeout(r, 30_000));
  }
  return next(specifier, context);
}

export async function load(url, context, next) {
  const loaded = await next(url, context);
  if (!busyMs || !url.endsWith('/src/cli/main.ts')) return loaded;
  const busy = `process.stderr.write('test: evaluating src/cli/main.ts\\n'); { const t = Date.now(); while (Date.now() - t < ${busyMs}); } process.stderr.write('test: evaluated src/cli/main.ts\\n');\n`;
  return { ...loaded, source: busy + String(loaded.source) };
}
