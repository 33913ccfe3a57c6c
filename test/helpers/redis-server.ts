/**
 * Redis servers of a test's own, on loopback ports of their own: to restart, flush or cluster
 * without touching the shared one. Nothing is kept on disk, unless the server is shut down saving
 * (`shutdownSaving`) or started with persistence among its arguments.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from './ports.ts';

export interface OwnRedis {
  port: number;
  url: string;
  /**
   * Stops the server abruptly (SIGKILL): whatever it held is gone, unless its arguments ask for an
   * append-only file, or `keepSaved` keeps what a `SAVE` wrote earlier for the next start (a
   * failover to a copy that lags behind).
   */
  kill(options?: { keepSaved?: boolean }): Promise<void>;
  /** Starts it again on the same port: empty, unless it saved what it held (`shutdownSaving`, or persistence among its arguments). */
  start(): Promise<void>;
  /** Stops the server as `SHUTDOWN SAVE` does (a graceful restart of a Redis that persists): what it held is on disk, for `start`. */
  shutdownSaving(): Promise<void>;
  /** A command through `redis-cli`, on a connection of its own: its answer, trimmed. */
  cli(...args: string[]): string;
  /** Freezes the server (SIGSTOP): connections stay open, nothing is answered, until `resume`. */
  pause(): void;
  resume(): void;
  /** Resumed if frozen, started again if killed: for a test that failed halfway through a fault. */
  ensureRunning(): Promise<void>;
  stop(): Promise<void>;
}

/** Resolves once the server on `port` answers PING; false if `child` exits first (its port was taken meanwhile). */
async function waitForPing(port: number, child: ChildProcess): Promise<boolean> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null || child.signalCode !== null) return false;
    const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on('error', () => {}); // refused while the server starts: expected
    try {
      await r.connect();
      if ((await r.ping()) === 'PONG') return true;
    } catch {
      // not up yet
    } finally {
      r.disconnect();
    }
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`redis on port ${port} did not start`);
}

/**
 * A port is free when `freePort` says so, and may be taken before the server binds it (by a server
 * of another test file, which picked the same one): a server that exits at start is started
 * again, on new ports where it may (`extraArgs` is asked again: a Cluster's bus port), on the same
 * one for a restart (which no outgoing connection can take: `freePort` picks none of theirs).
 */
const START_ATTEMPTS = 5;

export async function startOwnRedis(extraArgs: () => Promise<string[]> = async () => []): Promise<OwnRedis> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nudge-redis-'));
  let child: ChildProcess | null = null;
  let port = 0;
  let extra: string[] = [];
  const spawnOn = async () => {
    const c = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extra], { stdio: 'ignore' });
    child = c;
    return waitForPing(port, c);
  };
  const start = async () => {
    for (let attempt = 1; !(await spawnOn()); attempt++) {
      if (attempt === START_ATTEMPTS) throw new Error(`redis on port ${port} exited at start ${attempt} times (port taken?)`);
      await new Promise((res) => setTimeout(res, 200));
    }
  };
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    extra = await extraArgs();
    if (await spawnOn()) break;
    if (attempt === START_ATTEMPTS) throw new Error(`redis exited at start ${attempt} times, on new ports each time`);
  }
  const alive = (c: ChildProcess | null): c is ChildProcess => c !== null && c.exitCode === null && c.signalCode === null;
  const kill = async (options: { keepSaved?: boolean } = {}) => {
    const c = child;
    if (!alive(c)) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await exited;
    // What an earlier save wrote is not what this server held: the next start is empty, unless
    // asked (an append-only file, where the arguments ask for one, is kept).
    if (!options.keepSaved) rmSync(path.join(dir, 'dump.rdb'), { force: true });
  };
  const cli = (...args: string[]) => {
    const r = spawnSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8', timeout: 10_000 });
    if (r.status !== 0) throw new Error(`redis-cli ${args.join(' ')} failed: ${r.error?.message ?? ''}${r.stdout}${r.stderr}`);
    return r.stdout.trim();
  };
  const shutdownSaving = async () => {
    const c = child;
    if (!alive(c)) return;
    const exited = new Promise((r) => c.once('exit', r));
    cli('shutdown', 'save');
    await exited;
  };
  return {
    port, url: `redis://127.0.0.1:${port}`, kill, start, shutdownSaving, cli,
    pause: () => { (child as ChildProcess | null)?.kill('SIGSTOP'); },
    resume: () => { (child as ChildProcess | null)?.kill('SIGCONT'); },
    async ensureRunning() {
      const c = child as ChildProcess | null;
      if (alive(c)) c.kill('SIGCONT');
      else await start();
    },
    async stop() {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A Redis Cluster of `masters` nodes (no replicas), each on its own port. A node that does not
 * answer for `nodeTimeoutMs` is failed by the others, and with it the whole Cluster (CLUSTERDOWN)
 * until it answers again.
 */
export async function startOwnCluster(masters = 3, nodeTimeoutMs = 2_000): Promise<{ url: string; nodes: OwnRedis[]; stop(): Promise<void> }> {
  const nodes: OwnRedis[] = [];
  for (let i = 0; i < masters; i++) {
    // The cluster bus on a free port of its own: the default, the data port + 10000, may be taken
    // or beyond 65535.
    nodes.push(await startOwnRedis(async () => ['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${i}.conf`, '--cluster-node-timeout', String(nodeTimeoutMs),
      '--cluster-port', String(await freePort())]));
  }
  const create = spawnSync('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'],
    { encoding: 'utf8', timeout: 60_000 });
  if (create.status !== 0) {
    for (const n of nodes) await n.stop();
    throw new Error(`redis-cli --cluster create failed: ${create.error?.message ?? ''}${create.stdout}${create.stderr}`);
  }
  // The cluster is usable once every node knows every other and sees every slot served: on a
  // loaded machine the first node says so well before the others.
  const ready = (port: number) => {
    const info = spawnSync('redis-cli', ['-p', String(port), 'cluster', 'info'], { encoding: 'utf8', timeout: 5_000 }).stdout ?? '';
    return /cluster_state:ok/.test(info) && new RegExp(`cluster_known_nodes:${masters}\\b`).test(info);
  };
  const deadline = Date.now() + 60_000;
  while (!nodes.every((n) => ready(n.port))) {
    if (Date.now() > deadline) {
      for (const n of nodes) await n.stop();
      throw new Error(`the Redis Cluster on ports ${nodes.map((n) => n.port).join(', ')} did not become ready within 60 s`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url: nodes[0]!.url, nodes, stop: async () => { for (const n of nodes) await n.stop(); } };
}
