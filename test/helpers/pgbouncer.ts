/**
 * A PgBouncer of a test's own, pooling by transaction in front of the test's PostgreSQL, on a
 * loopback port of its own (Debian's package `pgbouncer`; as root, run as the `postgres` user,
 * since PgBouncer refuses to run as root). Nothing it holds outlives the test.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PG_ADMIN_URL } from './env.ts';
import { ended, owner, waitForConnection } from './postgres-server.ts';
import { freePort } from './ports.ts';

/** The pgbouncer binary: `PGBOUNCER`, else on PATH or in /usr/sbin; null when there is none. */
export function pgbouncerBinary(): string | null {
  if (process.env.PGBOUNCER) return existsSync(process.env.PGBOUNCER) ? process.env.PGBOUNCER : null;
  const found = spawnSync('sh', ['-c', 'command -v pgbouncer || ls /usr/sbin/pgbouncer'], { encoding: 'utf8' }).stdout.trim().split('\n')[0];
  return found && existsSync(found) ? found : null;
}

export interface OwnPgbouncer {
  /** `url` (a database URL of the test's PostgreSQL) with its host and port replaced by the pooler's. */
  through(url: string): string;
  stop(): Promise<void>;
}

/**
 * `passOptions` false leaves `ignore_startup_parameters` as PgBouncer has it by default, refusing
 * the `options` Nudge's scan connections send.
 */
export async function startPgbouncer(binary: string, poolSize = 4, passOptions = true): Promise<OwnPgbouncer> {
  const ids = owner();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nudge-pgbouncer-'));
  const server = new URL(PG_ADMIN_URL);
  const user = decodeURIComponent(server.username) || 'root';
  writeFileSync(path.join(dir, 'users.txt'), `"${user}" ""\n`);
  if ('uid' in ids) for (const f of ['', 'users.txt']) chownSync(path.join(dir, f), ids.uid, ids.gid);
  const log = path.join(dir, 'pgbouncer.log');
  let port = 0;
  let child: ChildProcess | null = null;
  const through = (url: string) => {
    const u = new URL(url);
    u.hostname = '127.0.0.1';
    u.port = String(port);
    return u.toString();
  };
  const kill = async () => {
    const c = child;
    if (c && !ended(c)) {
      const gone = new Promise((r) => c.once('exit', r));
      c.kill('SIGKILL');
      await gone;
    }
  };
  const stop = async () => {
    await kill();
    rmSync(dir, { recursive: true, force: true });
  };
  // A port `freePort` gave may be taken before PgBouncer binds it (parallel test files): a
  // PgBouncer that exits at start is started again on another port.
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    writeFileSync(path.join(dir, 'pgbouncer.ini'), [
      '[databases]',
      `* = host=${server.hostname} port=${server.port || 5432}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1', `listen_port = ${port}`, 'unix_socket_dir =',
      'auth_type = trust', `auth_file = ${path.join(dir, 'users.txt')}`,
      'pool_mode = transaction', `default_pool_size = ${poolSize}`, 'max_client_conn = 200',
      // Nudge's scan connections send `options` (README, "Connection poolers").
      ...(passOptions ? ['ignore_startup_parameters = options'] : []),
      `logfile = ${log}`,
    ].join('\n') + '\n');
    if ('uid' in ids) chownSync(path.join(dir, 'pgbouncer.ini'), ids.uid, ids.gid);
    const c: ChildProcess = spawn(binary, [path.join(dir, 'pgbouncer.ini')], { stdio: 'ignore', ...ids });
    child = c;
    try {
      await waitForConnection(through(PG_ADMIN_URL), c, log, 'pgbouncer');
      return { through, stop };
    } catch (error) {
      if (attempt === 5 || !ended(c)) {
        await stop();
        throw error;
      }
    }
  }
}
