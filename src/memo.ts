/**
 * Bounded memos for pure computations asked the same few questions over and over (due times,
 * calendar days, wall clocks, Intl formatters): a map that is forgotten all at once when full.
 */

/** Stores `value` under `key`, first emptying `memo` when it holds `limit` entries; returns `value`. */
export function remember<K, V>(memo: Map<K, V>, key: K, value: V, limit: number): V {
  if (memo.size >= limit) memo.clear();
  memo.set(key, value);
  return value;
}
