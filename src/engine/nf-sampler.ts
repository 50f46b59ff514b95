import type { Rng } from "./rng.ts";
import { SamplingError } from "./sampling-error.ts";

/** One latent thought drawn from the NF head, with its exact log-density. */
export interface ThoughtSample {
  vector: Float32Array;
  /** log N(vector; mu, diag sigma^2) at T_z = 1, whatever temperature drew it. */
  logProb: number;
  /** log N(vector; mu, diag (T_z sigma)^2): the density it was drawn from; null at T_z = 0. */
  behaviourLogProb: number | null;
}

const HALF_LOG_2PI = 0.5 * Math.log(2 * Math.PI);

/** Exact log N(u; mu, diag sigma^2) in float64:
 * sum_d -0.5 ((u_d - mu_d) / sigma_d)^2 - log sigma_d - 0.5 log(2 pi).
 * Always the T_z = 1 density: the model's likelihood, which scoring and RL ratios recompute. */
export function thoughtLogProb(u: ArrayLike<number>, mu: ArrayLike<number>, logSigma: ArrayLike<number>): number {
  if (u.length !== mu.length || mu.length !== logSigma.length) {
    throw new RangeError(
      `thoughtLogProb: lengths differ (u ${u.length}, mu ${mu.length}, logSigma ${logSigma.length})`,
    );
  }
  let sum = 0;
  for (let d = 0; d < mu.length; d++) {
    const z = (u[d] - mu[d]) / Math.exp(logSigma[d]);
    sum += -0.5 * z * z - logSigma[d] - HALF_LOG_2PI;
  }
  return sum;
}

/** u = mu + sigma * T * z with z ~ N(0, I), one rng.normal() per dimension in order. T = 0 gives
 * u = mu and draws nothing, so greedy thoughts leave the request's stream untouched. The logProb
 * is of the stored float32 vector, so it equals what a scoring request recomputes from it. */
export function sampleThought(
  mu: ArrayLike<number>,
  logSigma: ArrayLike<number>,
  temperature: number,
  rng: Rng,
): ThoughtSample {
  if (mu.length !== logSigma.length) {
    throw new RangeError(`sampleThought: mu has ${mu.length} dims, logSigma ${logSigma.length}`);
  }
  const vector = new Float32Array(mu.length);
  for (let d = 0; d < mu.length; d++) {
    vector[d] = temperature > 0 ? mu[d] + Math.exp(logSigma[d]) * temperature * rng.normal() : mu[d];
    // A non-finite thought would poison every later position of the sequence (and its logProb).
    if (!Number.isFinite(vector[d]))
      throw new SamplingError(`thought dimension ${d} is not finite (mu ${mu[d]}, log sigma ${logSigma[d]})`);
  }
  return {
    vector,
    logProb: thoughtLogProb(vector, mu, logSigma),
    behaviourLogProb: behaviourLogProb(vector, mu, logSigma, temperature),
  };
}

/** The density a thought was drawn from at temperature T: N(mu, (T sigma)^2), i.e. log sigma
 * shifted by log T. Null at T = 0: every draw is u = mu, a point mass with no density. */
export function behaviourLogProb(
  u: ArrayLike<number>,
  mu: ArrayLike<number>,
  logSigma: ArrayLike<number>,
  temperature: number,
): number | null {
  if (!(temperature > 0)) return null;
  const logT = Math.log(temperature);
  return thoughtLogProb(
    u,
    mu,
    Array.from(logSigma, (l) => l + logT),
  );
}
