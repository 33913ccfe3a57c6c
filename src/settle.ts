/** Waiting on pieces of work: all of them, or one for a bounded time. */

/** Waits for every promise to settle, then throws the first failure (in the order given), if any. */
export async function settleAll(promises: readonly Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/** What `within` rejects with: no answer in time (the server gone, or too slow). */
export class NoAnswerError extends Error {
  override name = 'NoAnswerError';
}

/**
 * `promise`, or a rejection naming `what` once `ms` milliseconds have passed: for answers a caller
 * cannot wait on for ever (a probe, a scrape), from a connection that waits for its server.
 */
export function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new NoAnswerError(`${what} did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}
