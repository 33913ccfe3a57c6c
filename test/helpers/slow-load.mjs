// A preload for the tests of a signal while the process loads (`node --import`): holds the loading
// of src/cli/main.ts (or SLOW_LOAD_MODULE) for 30 s, or its evaluation (slow-load-hooks.mjs),
// saying so on stderr first.
import { register } from 'node:module';

register('./slow-load-hooks.mjs', import.meta.url);
