import assert from "node:assert/strict";
import { describe, it, test } from "node:test";

import { behaviourLogProb, sampleThought, thoughtLogProb } from "../src/engine/nf-sampler.ts";
import { Rng } from "../src/engine/rng.ts";

const MU = [0.5, -1, 2, 0, 3.25];
const LOG_SIGMA = [0, -0.5, 0.3, -2, 1];

/** Closed form written independently: -0.5 * sum(z^2) - sum(log sigma) - D/2 log(2 pi). */
function closedForm(u: ArrayLike<number>, mu: number[], logSigma: number[]): number {
  const squares = mu.reduce((s, m, d) => s + ((u[d]! - m) / Math.exp(logSigma[d]!)) ** 2, 0);
  const logDet = logSigma.reduce((s, l) => s + l, 0);
  return -0.5 * squares - logDet - (mu.length / 2) * Math.log(2 * Math.PI);
}

describe("thoughtLogProb", () => {
  it("is the standard normal density in one dimension", () => {
    assert.ok(Math.abs(thoughtLogProb([1], [0], [0]) - (-0.5 - 0.5 * Math.log(2 * Math.PI))) < 1e-15);
  });
  it("at u = mu is -sum(log sigma) - D/2 log(2 pi)", () => {
    const expected = -LOG_SIGMA.reduce((s, l) => s + l, 0) - 2.5 * Math.log(2 * Math.PI);
    assert.ok(Math.abs(thoughtLogProb(MU, MU, LOG_SIGMA) - expected) < 1e-12);
  });
  it("rejects mismatched lengths", () => {
    assert.throws(() => thoughtLogProb([0, 1], [0], [0]), RangeError);
  });
});

describe("sampleThought", () => {
  it("T = 0 gives exactly mu and draws nothing", () => {
    const rng = Rng.fromSeed(5);
    const s = sampleThought(MU, LOG_SIGMA, 0, rng);
    assert.deepEqual(s.vector, Float32Array.from(MU));
    assert.ok(Math.abs(s.logProb - closedForm(s.vector, MU, LOG_SIGMA)) < 1e-9);
    assert.equal(rng.next(), Rng.fromSeed(5).next());
  });

  it("uses one rng.normal() per dimension, in order", () => {
    const s = sampleThought([0, 0, 0], [0, 0, 0], 1, Rng.fromSeed(21));
    const reference = Rng.fromSeed(21);
    assert.deepEqual(
      s.vector,
      Float32Array.from([0, 0, 0], () => reference.normal()),
    );
  });

  it("reports the T = 1 log-density of the returned vector", () => {
    const rng = Rng.fromSeed(8);
    for (const t of [0.5, 0.9, 1, 1.7]) {
      const s = sampleThought(MU, LOG_SIGMA, t, rng);
      assert.ok(Math.abs(s.logProb - closedForm(s.vector, MU, LOG_SIGMA)) < 1e-9, `T = ${t}`);
    }
  });

  it("repeats vectors for a seed and differs for another seed", () => {
    const draw = (seed: number) => {
      const rng = Rng.fromSeed(seed);
      return Array.from({ length: 5 }, () => sampleThought(MU, LOG_SIGMA, 0.9, rng).vector);
    };
    assert.deepEqual(draw(99), draw(99));
    assert.notDeepEqual(draw(99), draw(100));
  });

  it("has mean mu and variance (sigma * T)^2 per dimension", () => {
    const n = 20_000;
    const t = 0.9;
    const rng = Rng.fromSeed(2025);
    const sum = new Float64Array(MU.length);
    const sumSq = new Float64Array(MU.length);
    for (let i = 0; i < n; i++) {
      const { vector } = sampleThought(MU, LOG_SIGMA, t, rng);
      for (let d = 0; d < MU.length; d++) {
        sum[d]! += vector[d]!;
        sumSq[d]! += vector[d]! ** 2;
      }
    }
    MU.forEach((mu, d) => {
      const variance = (Math.exp(LOG_SIGMA[d]!) * t) ** 2;
      const mean = sum[d]! / n;
      const sampleVariance = (sumSq[d]! - n * mean * mean) / (n - 1);
      // Standard errors of a normal sample: sd / sqrt(n) for the mean, var * sqrt(2 / (n - 1)) for the variance.
      assert.ok(Math.abs(mean - mu) <= 4 * Math.sqrt(variance / n), `dim ${d}: mean ${mean} vs ${mu}`);
      assert.ok(
        Math.abs(sampleVariance - variance) <= 4 * variance * Math.sqrt(2 / (n - 1)),
        `dim ${d}: variance ${sampleVariance} vs ${variance}`,
      );
    });
  });
});

test("behaviourLogProb is the density at the sampling temperature, by hand; null at T_z = 0", () => {
  // N(1; 0, 0.5^2) in one dimension: -0.5 * (1 / 0.5)^2 - log 0.5 - 0.5 log(2 pi).
  const want = -2 + Math.log(2) - 0.5 * Math.log(2 * Math.PI);
  assert.ok(Math.abs(behaviourLogProb([1], [0], [0], 0.5)! - want) < 1e-12);
  // At T = 1 it is the model's density.
  assert.equal(behaviourLogProb([0.3, -1], [0.1, 0.2], [-1, 0.5], 1), thoughtLogProb([0.3, -1], [0.1, 0.2], [-1, 0.5]));
  assert.equal(behaviourLogProb([1], [0], [0], 0), null);
  // sampleThought reports both, for the vector it stored.
  const t = sampleThought([0, 0], [0, -1], 0.9, new Rng(5));
  assert.equal(t.behaviourLogProb, behaviourLogProb(t.vector, [0, 0], [0, -1], 0.9));
  assert.equal(t.logProb, thoughtLogProb(t.vector, [0, 0], [0, -1]));
});
