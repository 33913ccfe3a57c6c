/** Waiting on several pieces of work that must all have stopped before the caller goes on. */

/** Waits for every promise to settle, then throws the first failure (in the order given), if any. */
export async function settleAll(promises: readonly Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}
