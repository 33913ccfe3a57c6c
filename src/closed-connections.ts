/**
 * BullMQ 5.81 (taskforcesh/bullmq#3546, open): a connection BullMQ opened itself (a Worker's
 * blocking connection), closed while it was still starting, has ioredis reject the INFO its start
 * left queued only once the socket has closed, after `close()` removed the connection's listeners.
 * The constructor's own chain then re-emits that as an 'error' nobody listens to any more, which
 * rejects a promise nobody holds. Node would end the process on it with exit code 1: a daemon
 * stopped right after it started (seen here as a stop that said "stopped", then exited 1).
 *
 * `letClosedConnectionsGo` lets that one error go (ioredis's "Connection is closed.", raised by
 * its socket's close handler); any other unhandled rejection ends the process as Node would.
 * The test runner lets the same error go, and only it, in the tests' own processes
 * (`vitest.config.ts`), where tests run BullMQ Workers of their own.
 */

/** ioredis's message for commands flushed when a connection closes (CONNECTION_CLOSED_ERROR_MSG). */
const CLOSED = 'Connection is closed.';

let installed = false;

export function letClosedConnectionsGo(): void {
  if (installed) return;
  installed = true;
  process.on('unhandledRejection', (reason) => {
    if (isClosedConnection(reason)) return;
    // As Node does without this listener: an uncaught exception, exit code 1.
    throw reason;
  });
}

/**
 * Whether `reason` is ioredis flushing a closed connection's commands (nothing else is let go).
 * Read by its message and stack, not its class, so that the test runner's copy of an error sent
 * from a test's process is judged alike.
 */
export function isClosedConnection(reason: unknown): boolean {
  if (typeof reason !== 'object' || reason === null) return false;
  const { message, stack } = reason as { message?: unknown; stack?: unknown };
  return message === CLOSED && typeof stack === 'string' && /[\\/]ioredis[\\/]/.test(stack);
}
