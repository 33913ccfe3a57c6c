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

/** Longer than any command of the suite takes (the longest drains a couple of thousand emails in seconds). */
const RUN_TIMEOUT_MS = 90_000;

/**
 * Runs `nudge` to its exit. One that has not exited after `timeoutMs` is killed, and the promise
 * rejects naming the command with the end of its output: a hung command fails its test with
 * something to read, and no process outlives the test.
 */
export function runNudge(args: string[], env: Record<string, string | undefined>, cwd = REPO, timeoutMs = RUN_TIMEOUT_MS): Promise<CliResult> {
  const child = spawnNudge(args, env, cwd);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => { stdout += d; });
  child.stderr!.on('data', (d) => { stderr += d; });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`nudge ${args.join(' ')} did not exit within ${timeoutMs} ms; stdout ends: ${stdout.slice(-1_000)}; stderr ends: ${stderr.slice(-2_000)}`));
    }, timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
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
