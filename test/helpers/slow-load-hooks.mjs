// Module hooks of slow-load.mjs (they run on node's loader thread).
import { writeSync } from 'node:fs';

export async function resolve(specifier, context, next) {
  if (specifier.endsWith('/src/cli/main.ts')) {
    writeSync(2, 'test: holding the load of src/cli/main.ts\n');
    await new Promise((r) => setTimeout(r, 3_000));
  }
  return next(specifier, context);
}
