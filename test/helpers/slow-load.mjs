// A preload for one test (`node --import`): holds the loading of src/cli/main.ts for 3 s, and says
// so on stderr first, so that the test can signal a process while it loads its sources.
import { register } from 'node:module';

register('./slow-load-hooks.mjs', import.meta.url);
