/**
 * Loopback ports for servers of a test's own. They are taken below the kernel's range of ephemeral
 * ports (Linux's `ip_local_port_range`, 32768–60999 by default), which outgoing connections take
 * their source ports from: a port from that range (what listening on port 0 gives) can be taken by
 * any process's connection while the test's server is stopped for a restart, and held for that
 * connection's life. Below it, only a listener can take one, which `freePort` checks.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';

/** The lowest ephemeral port: Linux's own setting where it can be read, else its default (macOS starts at 49152). */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (Number.isInteger(low) && low > 0) return low;
  } catch {
    // not Linux
  }
  return 32768;
}

const LOW = ephemeralLow();
/** Ports to pick from: the 12,000 below the ephemeral range, none below 1024; none at all where that range starts too low. */
const RANGE = LOW - 1024 >= 2000 ? { from: Math.max(1024, LOW - 12_000), to: LOW - 1 } : null;

/** Whether `port` can be listened on at 127.0.0.1 now; with port 0, the port the kernel chose. */
function tryListen(port: number): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', (error: NodeJS.ErrnoException) => (error.code === 'EADDRINUSE' || error.code === 'EACCES' ? resolve(null) : reject(error)));
    s.listen(port, '127.0.0.1', () => {
      const chosen = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(chosen));
    });
  });
}

/**
 * A loopback port nothing listens on now, outside the ephemeral range where one is left. Another
 * test file may pick the same one before its server binds it: the servers' helpers start again on
 * a new port when theirs exits at start.
 */
export async function freePort(): Promise<number> {
  if (RANGE) {
    for (let attempt = 0; attempt < 100; attempt++) {
      const port = RANGE.from + Math.floor(Math.random() * (RANGE.to - RANGE.from + 1));
      if ((await tryListen(port)) !== null) return port;
    }
  }
  const any = await tryListen(0);
  if (any === null) throw new Error('no loopback port could be listened on');
  return any;
}
