import { Rng } from "../../src/engine/rng.ts";

/** Request arrival schedule, as vLLM's `bench serve --request-rate`: a Poisson process (gaps drawn
 * from an exponential distribution with mean 1 / rate), the first request at time 0. A rate of
 * Infinity sends everything at once. Seeded with the engine's RNG, so a schedule can be replayed. */

/** Exponential gap in seconds for a rate in requests/s, by inversion of a uniform in (0, 1]. */
export function exponentialGap(rng: Rng, rate: number): number {
  return -Math.log(1 - rng.next()) / rate;
}

/** Arrival offsets in ms from the start of the run, non-decreasing, one per request. */
export function poissonArrivals(count: number, rate: number, seed: number): number[] {
  if (!Number.isInteger(count) || count < 0) throw new RangeError(`count must be a non-negative integer, got ${count}`);
  if (!(rate > 0)) throw new RangeError(`request rate must be > 0 (Infinity: all at once), got ${rate}`);
  if (rate === Infinity) return new Array<number>(count).fill(0);
  const rng = Rng.fromSeed(seed);
  const out: number[] = [];
  let t = 0;
  for (let i = 0; i < count; i++) {
    if (i > 0) t += exponentialGap(rng, rate) * 1000;
    out.push(t);
  }
  return out;
}
