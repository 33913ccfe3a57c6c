/**
 * Redis servers of a test's own, on loopback ports of their own: to restart, flush or cluster
 * without touching the shared one. Nothing is kept on disk.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export interface OwnRedis {
  port: number;
  url: string;
  /** Stops the server abruptly (SIGKILL): whatever it held is gone. */
  kill(): Promise<void>;
  /** Starts it again on the same port, empty. */
  start(): Promise<void>;
  /** Freezes the server (SIGSTOP): connections stay open, nothing is answered, until `resume`. */
  pause(): void;
  resume(): void;
  stop(): Promise<void>;
}

async function waitForPing(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on('error', () => {}); // refused while the server starts: expected
    try {
      await r.connect();
      if ((await r.ping()) === 'PONG') return;
    } catch {
      // not up yet
    } finally {
      r.disconnect();
    }
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`redis on port ${port} did not start`);
}

export async function startOwnRedis(extraArgs: string[] = []): Promise<OwnRedis> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nudge-redis-'));
  let child: ChildProcess | null = null;
  const start = async () => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extraArgs], { stdio: 'ignore' });
    await waitForPing(port);
  };
  const kill = async () => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await exited;
  };
  await start();
  return {
    port, url: `redis://127.0.0.1:${port}`, kill, start,
    pause: () => { (child as ChildProcess | null)?.kill('SIGSTOP'); },
    resume: () => { (child as ChildProcess | null)?.kill('SIGCONT'); },
    async stop() {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A Redis Cluster of `masters` nodes (no replicas), each on its own port. */
export async function startOwnCluster(masters = 3): Promise<{ url: string; stop(): Promise<void> }> {
  const nodes: OwnRedis[] = [];
  for (let i = 0; i < masters; i++) {
    // The cluster bus on a free port of its own: the default, the data port + 10000, may be taken
    // or beyond 65535.
    const bus = await freePort();
    nodes.push(await startOwnRedis(['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${i}.conf`, '--cluster-node-timeout', '2000',
      '--cluster-port', String(bus)]));
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
  return { url: nodes[0]!.url, stop: async () => { for (const n of nodes) await n.stop(); } };
}
