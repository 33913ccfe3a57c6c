#!/usr/bin/env node
// Runs the TypeScript sources directly (tsx), so `npx nudge` works right after `npm ci`.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
await main(process.argv);
