/** What the figures were measured on: printed at the top of every run. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { Redis } from 'ioredis';
import pg from 'pg';

export async function describeMachine(adminUrl: string, redisUrl: string, repo: string): Promise<string[]> {
  const cpu = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? os.cpus()[0]?.model ?? 'unknown';
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  const pgVersion = (await client.query('show server_version')).rows[0].server_version as string;
  const sharedBuffers = (await client.query('show shared_buffers')).rows[0].shared_buffers as string;
  await client.end();
  const redis = new Redis(redisUrl);
  const info = await redis.info('server');
  redis.disconnect();
  const git = (args: string[]) => {
    try {
      return execFileSync('git', args, { cwd: repo, encoding: 'utf8' }).trim();
    } catch {
      return '?';
    }
  };
  const dirty = git(['status', '--porcelain', '--', 'src', 'workers', 'migrations', 'templates']) ? ' + uncommitted changes in src/workers' : '';
  return [
    `date: ${new Date().toISOString()}`,
    `commit: ${git(['rev-parse', '--short', 'HEAD'])}${dirty}`,
    `cpu: ${os.availableParallelism()} × ${cpu}; memory ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB; load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`,
    `node ${process.version}; PostgreSQL ${pgVersion} (shared_buffers ${sharedBuffers}); Redis ${/redis_version:(\S+)/.exec(info)?.[1] ?? '?'}`,
  ];
}
