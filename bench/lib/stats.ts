/** Summary statistics as vLLM's `bench serve` reports them: mean, median and percentiles with
 * linear interpolation between order statistics (numpy's default), so numbers compare directly.
 * An empty sample gives NaN everywhere (written as null in JSON). */

export interface Summary {
  count: number;
  mean: number;
  median: number;
  p99: number;
  std: number;
  min: number;
  max: number;
}

export function mean(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  let s = 0;
  for (const x of xs) s += x;
  return s / xs.length;
}

/** Population standard deviation (numpy's np.std default, as vLLM prints it). */
export function std(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const m = mean(xs);
  let s = 0;
  for (const x of xs) s += (x - m) ** 2;
  return Math.sqrt(s / xs.length);
}

/** p in [0, 100]; the sample need not be sorted. */
export function percentile(xs: readonly number[], p: number): number {
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be in [0, 100], got ${p}`);
  if (xs.length === 0) return NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (rank - lo);
}

export const median = (xs: readonly number[]): number => percentile(xs, 50);

export function summarize(xs: readonly number[]): Summary {
  return {
    count: xs.length,
    mean: mean(xs),
    median: median(xs),
    p99: percentile(xs, 99),
    std: std(xs),
    min: xs.length ? Math.min(...xs) : NaN,
    max: xs.length ? Math.max(...xs) : NaN,
  };
}

/** The most common value and how often it occurs (the majority-answer baseline). */
export function mode<T>(xs: readonly T[]): { value: T | undefined; count: number } {
  const counts = new Map<T, number>();
  let best: T | undefined;
  let bestCount = 0;
  for (const x of xs) {
    const c = (counts.get(x) ?? 0) + 1;
    counts.set(x, c);
    if (c > bestCount) [best, bestCount] = [x, c];
  }
  return { value: best, count: bestCount };
}
