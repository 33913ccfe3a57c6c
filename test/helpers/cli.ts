/** Runs `nudge` as a user does: a separate process, its exit code, stdout and stderr. */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { REPO } from './world.ts';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** The last line of stdout parsed as JSON (the commands' summary), or null. */
  summary: Record<string, unknown> | null;
}

const BIN = path.join(REPO, 'bin', 'nudge.js');

export function spawnNudge(args: string[], env: Record<string, string | undefined>, cwd = REPO): ChildProcess {
  const childEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...env })) if (v !== undefined) childEnv[k] = v;
  return spawn(process.execPath, [BIN, ...args], { env: childEnv, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
}

export function runNudge(args: string[], env: Record<string, string | undefined>, cwd = REPO): Promise<CliResult> {
  const child = spawnNudge(args, env, cwd);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => { stdout += d; });
  child.stderr!.on('data', (d) => { stderr += d; });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      const last = stdout.trim().split('\n').at(-1) ?? '';
      let summary: Record<string, unknown> | null = null;
      try {
        summary = JSON.parse(last) as Record<string, unknown>;
      } catch {
        summary = null;
      }
      resolve({ code, stdout, stderr, summary });
    });
  });
}
