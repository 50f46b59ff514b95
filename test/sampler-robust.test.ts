import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { sampleThought } from "../src/engine/nf-sampler.ts";
import { Rng } from "../src/engine/rng.ts";
import { sampleToken, sanitizeLogits, type TokenHistory } from "../src/engine/sampler.ts";
import { SamplingError } from "../src/engine/sampling-error.ts";
import { greedySampling, samplingProblem } from "../src/engine/sampling-params.ts";
import type { SamplingParams } from "../src/engine/types.ts";

/** The samplers never produce NaN: extreme parameters that overflow, non-finite logits from the
 * model, and filters that leave nothing all give a token (or a SamplingError for the one
 * sequence when nothing is usable). Fixed logits, values worked out by hand. */

const params = (over: Partial<SamplingParams> = {}): SamplingParams => greedySampling({ temperature: 1, ...over });
const history = (seen: number[] = []): TokenHistory => ({ counts: new Map(), seen: new Set(seen) });
const LOGITS = Float32Array.of(1, 3, 0.5, 2, -1, 2);
const lse = (xs: number[]) => Math.log(xs.reduce((s, x) => s + Math.exp(x), 0));

describe("extreme parameters", () => {
  it("the issue's request (top_p 0, repetition_penalty 1e-300, seed 0) gives a token, not NaN", () => {
    // Seen ids 0, 3, 5 have positive logits: divided by 1e-300 they overflow float32 to +Inf.
    // They tie at the largest float, top_p 0 keeps the most likely one, lowest id first: 0.
    const p = params({ topP: 0, repetitionPenalty: 1e-300, seed: 0, logprobs: true, topLogprobs: 2 });
    for (const seed of [0, 1, 2]) {
      const s = sampleToken(LOGITS, p, history([0, 3, 5]), Rng.fromSeed(seed));
      assert.equal(s.tokenId, 0);
      // Log-probs stay the model's own, from the raw logits.
      assert.ok(Math.abs(s.logprob! - (1 - lse([...LOGITS]))) < 1e-6, `logprob ${s.logprob}`);
      assert.deepEqual(
        s.topLogprobs.map((t) => t.tokenId),
        [1, 3],
      );
    }
  });

  it("at top_p 1 the overflowed tokens share the mass: only they are drawn", () => {
    const p = params({ repetitionPenalty: 1e-300 });
    const rng = Rng.fromSeed(7);
    const drawn = new Set(Array.from({ length: 200 }, () => sampleToken(LOGITS, p, history([0, 3, 5]), rng).tokenId));
    assert.deepEqual([...drawn].sort(), [0, 3, 5]);
  });

  it("a temperature near zero is greedy, and greedy picks the lowest id among overflowed ties", () => {
    assert.equal(sampleToken(LOGITS, params({ temperature: 1e-300 }), history(), Rng.fromSeed(0)).tokenId, 1);
    assert.equal(
      sampleToken(LOGITS, params({ temperature: 0, repetitionPenalty: 1e-300 }), history([3, 5]), Rng.fromSeed(0))
        .tokenId,
      3,
    );
  });
});

describe("non-finite logits", () => {
  it("NaN logits are never drawn and the others keep their softmax share", () => {
    const logits = Float32Array.of(NaN, 3, NaN, 2, -1, 2);
    const rng = Rng.fromSeed(3);
    const n = 4000;
    const counts = new Array<number>(6).fill(0);
    for (let i = 0; i < n; i++) {
      const s = sampleToken(logits, params({ logprobs: true }), history(), rng);
      assert.ok(Number.isFinite(s.logprob));
      counts[s.tokenId]!++;
    }
    assert.equal(counts[0], 0);
    assert.equal(counts[2], 0);
    // softmax over (3, 2, -1, 2): p(1) = e^3 / (e^3 + 2 e^2 + e^-1) = 0.5739.
    const p1 = Math.exp(3) / (Math.exp(3) + 2 * Math.exp(2) + Math.exp(-1));
    assert.ok(Math.abs(counts[1]! / n - p1) < 4 * Math.sqrt((p1 * (1 - p1)) / n), `token 1 drawn ${counts[1]} of ${n}`);
  });

  it("a +Inf logit wins with log-prob 0; the rest get OpenAI's -9999 floor, never -Infinity or NaN", () => {
    const logits = Float32Array.of(1, 3, 0.5, 2, Infinity, 2);
    const s = sampleToken(logits, params({ logprobs: true, topLogprobs: 3 }), history(), Rng.fromSeed(0));
    assert.equal(s.tokenId, 4);
    assert.equal(s.logprob, 0);
    assert.deepEqual(s.topLogprobs, [
      { tokenId: 4, logprob: 0 },
      { tokenId: 1, logprob: -9999 },
      { tokenId: 3, logprob: -9999 },
    ]);
  });

  it("sanitizeLogits: NaN -> -Infinity, +Infinity -> the largest float32; false when nothing is left", () => {
    const a = Float32Array.of(NaN, Infinity, -Infinity, 1.5);
    assert.equal(sanitizeLogits(a), true);
    assert.deepEqual([...a], [-Infinity, 3.4028234663852886e38, -Infinity, 1.5]);
    assert.equal(sanitizeLogits(Float32Array.of(NaN, -Infinity)), false);
  });

  it("nothing usable (all NaN, or all banned) is a SamplingError for that sequence", () => {
    assert.throws(() => sampleToken(Float32Array.of(NaN, NaN), params(), history(), Rng.fromSeed(0)), SamplingError);
    assert.throws(
      () => sampleToken(Float32Array.of(NaN, 1), params({ temperature: 0 }), history(), Rng.fromSeed(0), [1]),
      SamplingError,
    );
  });

  it("a thought that overflows (huge T_z or sigma) is a SamplingError, not an Infinity vector", () => {
    assert.throws(() => sampleThought([0, 0], [0, 0], 1e39, Rng.fromSeed(0)), SamplingError);
    assert.throws(() => sampleThought([0, 0], [0, 1000], 1, Rng.fromSeed(0)), SamplingError);
    assert.throws(() => sampleThought([NaN, 0], [0, 0], 0, Rng.fromSeed(0)), SamplingError);
    assert.deepEqual([...sampleThought([0.5, -1], [0, 0], 0, Rng.fromSeed(0)).vector], [0.5, -1]);
  });
});

describe("samplingProblem (the engine's backstop behind the API schema)", () => {
  it("accepts the defaults and names the first bad field", () => {
    assert.equal(samplingProblem(greedySampling(), 0.9), null);
    assert.equal(samplingProblem(greedySampling({ temperature: 2, topP: 0, repetitionPenalty: 1e-300 }), 0), null);
    const bad: [Partial<SamplingParams>, number, RegExp][] = [
      [{ temperature: -0.1 }, 0, /^temperature/],
      [{ temperature: NaN }, 0, /^temperature/],
      [{ topP: 1.5 }, 0, /^top_p/],
      [{ topK: 2.5 }, 0, /^top_k/],
      [{ minP: -1 }, 0, /^min_p/],
      [{ presencePenalty: Infinity }, 0, /^presence_penalty/],
      [{ frequencyPenalty: NaN }, 0, /^frequency_penalty/],
      [{ repetitionPenalty: 0 }, 0, /^repetition_penalty must be finite and > 0, got 0/],
      [{ maxTokens: -1 }, 0, /^max_tokens/],
      [{ topLogprobs: -1 }, 0, /^top_logprobs/],
      [{}, -1, /^latent_temperature/],
    ];
    for (const [over, tz, re] of bad)
      assert.match(samplingProblem(greedySampling(over), tz) ?? "", re, JSON.stringify(over));
  });
});
