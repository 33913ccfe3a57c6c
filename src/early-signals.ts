/**
 * `bin/nudge.js` takes SIGTERM and SIGINT before the sources load. A command that stops on a
 * signal in its own way calls this right after installing its handlers: the early ones go, and
 * the signal never finds the process without a handler (a signal caught but not yet handed over
 * when the last handler goes is dropped).
 */
export function takeOverSignals(): void {
  const release = (globalThis as Record<symbol, unknown>)[Symbol.for('nudge.earlySignals')];
  if (typeof release === 'function') release();
}
