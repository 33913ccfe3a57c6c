/**
 * A PostgreSQL server of a test's own, on a loopback port of its own, to stop and start under
 * running daemons without touching the shared one. Built with the machine's server binaries
 * (`pg_config --bindir`, or `PG_BINDIR`); as root, run as the `postgres` user, since PostgreSQL
 * refuses to run as root. Nothing it holds outlives the test.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort } from './ports.ts';

export interface OwnPostgres {
  port: number;
  /** A URL of the server with `database` in its path. */
  url(database: string): string;
  /** Stops the server as a crash would (immediate shutdown: no checkpoint; recovery at the next start). */
  crash(): Promise<void>;
  /** Stops the server as `pg_ctl restart` does (fast shutdown: transactions rolled back, clients cut, a checkpoint). */
  shutdown(): Promise<void>;
  /** Starts it again on the same port, with the data it had. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Where the server binaries are, or null when this machine has none (only a client, say). */
export function postgresBinaries(): string | null {
  const fromEnv = process.env.PG_BINDIR;
  const dir = fromEnv ?? spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' }).stdout?.trim();
  return dir && existsSync(path.join(dir, 'postgres')) && existsSync(path.join(dir, 'initdb')) ? dir : null;
}

/** As root, the `postgres` user's ids, to run the server and own its files; otherwise nothing (this user). */
export function owner(): { uid: number; gid: number } | Record<string, never> {
  if (process.getuid?.() !== 0) return {};
  const id = (flag: string) => {
    const r = spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' });
    if (r.status !== 0 || !/^\d+$/.test(r.stdout.trim())) throw new Error('running as root, and there is no `postgres` user to run a PostgreSQL server as');
    return Number(r.stdout.trim());
  };
  return { uid: id('-u'), gid: id('-g') };
}

/** The process has ended (by itself or by a signal). */
export function ended(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** Resolves once `url` answers a query; throws, with `name`'s log, if `child` ends first or after 10 s. */
export async function waitForConnection(url: string, child: ChildProcess, log: string, name = 'postgres'): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (ended(child)) throw new Error(`${name} ended (${child.exitCode ?? child.signalCode}) while starting; its log: ${readLog(log)}`);
    const client = new pg.Client({ connectionString: url });
    client.on('error', () => {}); // refused while the server starts: expected
    try {
      await client.connect();
      await client.query('select 1');
      return;
    } catch {
      // not up yet
    } finally {
      await client.end().catch(() => {});
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${name} did not start within 10 s; its log: ${readLog(log)}`);
}

function readLog(file: string): string {
  try {
    return readFileSync(file, 'utf8').slice(-2_000);
  } catch {
    return '(none)';
  }
}

export async function startOwnPostgres(): Promise<OwnPostgres> {
  const bin = postgresBinaries();
  if (!bin) throw new Error('no PostgreSQL server binaries (set PG_BINDIR or put pg_config on PATH)');
  let port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nudge-pg-'));
  const data = path.join(dir, 'data');
  const log = path.join(dir, 'server.log');
  const url = (database: string) => `postgres://root@127.0.0.1:${port}/${database}`;
  let child: ChildProcess | null = null;
  const start = async () => {
    const out = openSync(log, 'a');
    try {
      child = spawn(path.join(bin, 'postgres'), ['-D', data, '-p', String(port), '-k', dir,
        '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'full_page_writes=off'], { stdio: ['ignore', out, out], ...ids });
    } finally {
      closeSync(out);
    }
    await waitForConnection(url('postgres'), child, log);
  };
  /** SIGQUIT: immediate shutdown, as after a crash; SIGINT: fast shutdown. */
  const halt = async (signal: NodeJS.Signals) => {
    const c = child;
    if (!c || ended(c)) return;
    const exited = new Promise((resolve) => c.once('exit', resolve));
    c.kill(signal);
    await exited;
  };
  const remove = async () => {
    await halt('SIGINT');
    rmSync(dir, { recursive: true, force: true });
  };
  let ids: ReturnType<typeof owner> = {};
  try {
    ids = owner();
    if ('uid' in ids) chownSync(dir, ids.uid, ids.gid);
    const init = spawnSync(path.join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'root', '--no-sync', '-E', 'UTF8', '--locale=C'], { encoding: 'utf8', ...ids });
    if (init.status !== 0) throw new Error(`initdb failed: ${init.stderr || init.error?.message}`);
    // The free port may be taken before the server binds it (by a server of another test file,
    // which picked the same one): started again on another.
    for (let attempt = 1; ; attempt++) {
      try {
        await start();
        break;
      } catch (error) {
        if (attempt === 5 || !/could not bind|Address already in use/i.test((error as Error).message)) throw error;
        rmSync(log, { force: true });
        port = await freePort();
      }
    }
  } catch (error) {
    await remove();
    throw error;
  }
  return { port, url, crash: () => halt('SIGQUIT'), shutdown: () => halt('SIGINT'), start, stop: remove };
}
