import assert from "node:assert/strict";
import { test } from "node:test";
import { Rng } from "../src/engine/rng.ts";
import { applyLogitBias, sampleToken, scoreToken } from "../src/engine/sampler.ts";
import { greedySampling } from "../src/engine/sampling-params.ts";
import { StopMatcher } from "../src/engine/stop-matcher.ts";

/** logit_bias in the sampler, scoring ranks, and the stop matcher under min_tokens: exact values. */

const LOGITS = Float32Array.of(1, 3, 0.5, 2, -1, 2);
const history = () => ({ counts: new Map<number, number>(), seen: new Set<number>() });
const lse = (xs: ArrayLike<number>) => Math.log(Array.from(xs).reduce((s, x) => s + Math.exp(x), 0));

test("applyLogitBias adds each bias to its id, skips ids outside the vocabulary, keeps masked ids masked", () => {
  const l = Float32Array.of(1, -Infinity, 2);
  applyLogitBias(l, [
    [0, 1.5],
    [1, 100],
    [2, -100],
    [7, 3],
  ]);
  assert.deepEqual([...l], [2.5, -Infinity, -98]);
});

test("greedy: the bias decides the argmax; logprob and top logprobs are the raw model's", () => {
  const p = greedySampling({ temperature: 0, logprobs: true, topLogprobs: 2, logitBias: [[4, 5]] });
  const s = sampleToken(LOGITS, p, history(), Rng.fromSeed(1));
  assert.equal(s.tokenId, 4); // -1 + 5 = 4 beats 3
  const z = lse(LOGITS);
  assert.ok(Math.abs(s.logprob! - (-1 - z)) < 1e-6);
  assert.deepEqual(
    s.topLogprobs.map((t) => t.tokenId),
    [1, 3],
  );
  assert.ok(Math.abs(s.topLogprobs[0]!.logprob - (3 - z)) < 1e-6);
});

test("sampled with a fixed seed: the draw is over the biased distribution", () => {
  // Bias 1 down by 100 and 4 up by 4: probs ~ exp([1, -97, 0.5, 2, 3, 2]).
  const biased = [1, -97, 0.5, 2, 3, 2];
  const z = biased.reduce((s, x) => s + Math.exp(x), 0);
  const p = greedySampling({
    temperature: 1,
    logitBias: [
      [1, -100],
      [4, 4],
    ],
  });
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    const u = Rng.fromSeed(seed).next();
    let c = 0;
    const expected = biased.findIndex((x) => {
      c += Math.exp(x) / z;
      return c > u;
    });
    assert.equal(sampleToken(LOGITS, p, history(), Rng.fromSeed(seed)).tokenId, expected, `seed ${seed}`);
  }
  // The same seeds without the bias: id 1 (the most likely) is drawn, which the bias rules out.
  const unbiased = [1, 2, 3, 4, 5, 6, 7, 8].map(
    (seed) => sampleToken(LOGITS, greedySampling({ temperature: 1 }), history(), Rng.fromSeed(seed)).tokenId,
  );
  assert.ok(unbiased.includes(1), JSON.stringify(unbiased));
});

test("scoreToken: logprob, rank as 1 + the strictly more likely tokens, top tokens lowest id first on ties", () => {
  const z = lse(LOGITS);
  assert.deepEqual(scoreToken(LOGITS, 3, undefined), { logprob: 2 - z });
  const s = scoreToken(LOGITS, 5, 3);
  assert.ok(Math.abs(s.logprob! - (2 - z)) < 1e-6);
  assert.equal(s.rank, 2); // only id 1 (3) is above 2; id 3 ties
  assert.deepEqual(
    s.top!.map((t) => t.tokenId),
    [1, 3, 5],
  );
  assert.equal(scoreToken(LOGITS, 4, 0).rank, 6);
  assert.deepEqual(scoreToken(LOGITS, 4, 0).top, []);
});

test("StopMatcher inactive (min_tokens not reached): all text released, no match; then only new text matches", () => {
  const m = new StopMatcher(["e"]);
  assert.deepEqual(m.push(" is", false), { delta: " is", stopped: false });
  assert.deepEqual(m.push(" is Lee", false), { delta: " Lee", stopped: false });
  // Active: the "e"s of "Lee" are older text; " stud" has none.
  assert.deepEqual(m.push(" is Lee stud", true), { delta: " stud", stopped: false });
  assert.deepEqual(m.push(" is Lee student", true), { delta: "", stopped: true });
  assert.equal(m.flush(" is Lee student"), "");
  // A stop string that begins in old text and ends in new text still counts (as vLLM's look-back).
  const n = new StopMatcher(["ab"]);
  n.push("xa", false);
  assert.deepEqual(n.push("xab", true), { delta: "", stopped: true });
});
