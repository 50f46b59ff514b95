import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Rng } from "../src/engine/rng.ts";
import {
  applyMinP,
  applyPenalties,
  applyTopK,
  applyTopP,
  greedyFromTop,
  logSoftmax,
  needsOnlyTopLogits,
  sampleToken,
  softmax,
  type TokenHistory,
} from "../src/engine/sampler.ts";
import { greedySampling } from "../src/engine/sampling-params.ts";
import type { SamplingParams } from "../src/engine/types.ts";

function params(over: Partial<SamplingParams> = {}): SamplingParams {
  return greedySampling({ temperature: 1, ...over });
}

function history(counts: [number, number][] = [], seen: number[] = []): TokenHistory {
  return { counts: new Map(counts), seen: new Set(seen) };
}

/** ids 3 and 5 tie on purpose: tie-breaking is part of the contract. */
const LOGITS = Float32Array.of(1, 3, 0.5, 2, -1, 2);

/** Independent float64 references, written out rather than calling the code under test. */
function refProbs(logits: ArrayLike<number>, t: number, keep?: Set<number>): number[] {
  const ids = Array.from(logits, (_, i) => i).filter((i) => !keep || keep.has(i));
  const z = ids.reduce((s, i) => s + Math.exp(logits[i]! / t), 0);
  return Array.from(logits, (x, i) => (ids.includes(i) ? Math.exp(x / t) / z : 0));
}
function refLogprobs(logits: ArrayLike<number>): number[] {
  const lse = Math.log(Array.from(logits).reduce((s, x) => s + Math.exp(x), 0));
  return Array.from(logits, (x) => x - lse);
}
const finiteIds = (a: Float32Array) => [...a.keys()].filter((i) => a[i] !== -Infinity);
const nonzeroIds = (a: Float64Array) => [...a.keys()].filter((i) => a[i] !== 0);

function drawCounts(logits: Float32Array, p: SamplingParams, n: number, seed: number, banned?: number[]) {
  const rng = Rng.fromSeed(seed);
  const counts = new Array<number>(logits.length).fill(0);
  for (let i = 0; i < n; i++) counts[sampleToken(logits, p, history(), rng, banned).tokenId]!++;
  return counts;
}

/** Each category within 4 binomial standard errors of n * p (exact 0 where p = 0). */
function assertFrequencies(counts: number[], probs: number[], n: number): void {
  probs.forEach((p, i) => {
    const sd = Math.sqrt(n * p * (1 - p));
    const diff = Math.abs(counts[i]! - n * p);
    assert.ok(
      diff <= 4 * sd,
      `token ${i}: count ${counts[i]}, expected ${(n * p).toFixed(1)} +- ${(4 * sd).toFixed(1)}`,
    );
  });
}

describe("Rng", () => {
  it("repeats a stream for a seed and differs for another seed", () => {
    const draw = (seed: number) => {
      const rng = Rng.fromSeed(seed);
      return Array.from({ length: 50 }, () => rng.next());
    };
    assert.deepEqual(draw(7), draw(7));
    assert.notDeepEqual(draw(7), draw(8));
    for (const u of draw(7)) assert.ok(u >= 0 && u < 1);
  });

  it("keeps seeds below 2^32 as given and draws a seed when null", () => {
    assert.equal(Rng.fromSeed(123).seed, 123);
    assert.notEqual(Rng.fromSeed(2 ** 32 + 5).seed, 5); // high bits are folded in, not dropped
    const random = Rng.fromSeed(null);
    assert.ok(Number.isInteger(random.seed) && random.seed >= 0 && random.seed < 2 ** 32);
    assert.throws(() => Rng.fromSeed(1.5), RangeError);
  });
});

describe("penalties", () => {
  const base = Float32Array.of(2, -1, 0.5, 3, -2);
  const hist = history(
    [
      [0, 2],
      [1, 1],
    ],
    [0, 1, 2, -1],
  ); // -1 (a thought position) is skipped
  const run = (over: Partial<SamplingParams>) => {
    const logits = base.slice();
    applyPenalties(logits, hist, params(over));
    return Array.from(logits);
  };

  it("presence subtracts once per generated token", () => {
    assert.deepEqual(run({ presencePenalty: 0.5 }), [1.5, -1.5, 0.5, 3, -2]);
  });
  it("frequency subtracts per occurrence", () => {
    assert.deepEqual(run({ frequencyPenalty: 0.25 }), [1.5, -1.25, 0.5, 3, -2]);
  });
  it("repetition divides positive and multiplies negative logits of seen tokens", () => {
    assert.deepEqual(run({ repetitionPenalty: 2 }), [1, -2, 0.25, 3, -2]);
  });
  it("applies repetition first, then frequency and presence (vLLM order)", () => {
    assert.deepEqual(
      run({ repetitionPenalty: 2, presencePenalty: 0.5, frequencyPenalty: 0.25 }),
      [0, -2.75, 0.25, 3, -2],
    );
  });
  it("leaves logits alone when every penalty is off", () => {
    assert.deepEqual(run({}), Array.from(base));
  });
});

describe("filters", () => {
  it("top-k keeps exactly the k largest, plus ties with the k-th", () => {
    const topK = (k: number) => {
      const logits = LOGITS.slice();
      applyTopK(logits, k);
      return finiteIds(logits);
    };
    assert.deepEqual(topK(1), [1]);
    assert.deepEqual(topK(2), [1, 3, 5]); // 3 and 5 tie at the boundary: both stay
    assert.deepEqual(topK(3), [1, 3, 5]);
    assert.deepEqual(topK(4), [0, 1, 3, 5]);
    assert.deepEqual(topK(0), [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(topK(99), [0, 1, 2, 3, 4, 5]);
  });

  const PROBS = [0.1, 0.4, 0.05, 0.2, 0.05, 0.2];
  const topP = (p: number, scale = 1) => {
    const probs = Float64Array.from(PROBS, (x) => x * scale);
    applyTopP(probs, p);
    return nonzeroIds(probs);
  };

  it("top-p keeps the smallest most-likely set reaching p, the crossing token included", () => {
    assert.deepEqual(topP(0.3), [1]);
    assert.deepEqual(topP(0.41), [1, 3]);
    assert.deepEqual(topP(0.5), [1, 3]);
    assert.deepEqual(topP(0.75), [1, 3, 5]); // 3 before 5: ties go to the lower id
    assert.deepEqual(topP(0.85), [0, 1, 3, 5]);
    assert.deepEqual(topP(0.97), [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(topP(0), [1]); // at least one token
    assert.deepEqual(topP(1), [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(topP(0.75, 3), [1, 3, 5]); // relative to the total mass
  });

  it("top-p matches a full sort on a large vocabulary", () => {
    const rng = Rng.fromSeed(11);
    const logits = Float32Array.from({ length: 5000 }, () => 4 * rng.normal());
    for (const p of [0.1, 0.5, 0.9, 0.99]) {
      const probs = softmax(logits, 1);
      const order = [...probs.keys()].sort((i, j) => probs[j]! - probs[i]! || i - j);
      const expected: number[] = [];
      let mass = 0;
      for (const i of order) {
        if (mass >= p) break;
        expected.push(i);
        mass += probs[i]!;
      }
      applyTopP(probs, p);
      assert.deepEqual(
        nonzeroIds(probs),
        expected.sort((a, b) => a - b),
        `p = ${p}`,
      );
    }
  });

  it("min-p zeroes tokens below minP * max prob", () => {
    const minP = (m: number) => {
      const probs = Float64Array.from(PROBS);
      applyMinP(probs, m);
      return nonzeroIds(probs);
    };
    assert.deepEqual(minP(0.3), [1, 3, 5]);
    assert.deepEqual(minP(0.25), [0, 1, 3, 5]); // 0.1 equals the threshold: kept
    assert.deepEqual(minP(0.6), [1]);
    assert.deepEqual(minP(5), [1]); // capped at 1: the top token survives
    assert.deepEqual(minP(0), [0, 1, 2, 3, 4, 5]);
  });
});

describe("softmax and logSoftmax", () => {
  it("match the float64 reference", () => {
    const probs = softmax(LOGITS, 0.7);
    refProbs(LOGITS, 0.7).forEach((p, i) => assert.ok(Math.abs(probs[i]! - p) < 1e-15));
    const logprobs = logSoftmax(LOGITS);
    refLogprobs(LOGITS).forEach((lp, i) => assert.ok(Math.abs(logprobs[i]! - lp) < 1e-12));
  });
  it("temperature 0 is one-hot on the argmax", () => {
    assert.deepEqual(Array.from(softmax(LOGITS, 0)), [0, 1, 0, 0, 0, 0]);
  });
});

describe("sampleToken", () => {
  it("greedy picks the argmax, lowest id on ties, and draws nothing", () => {
    const rng = Rng.fromSeed(1);
    assert.equal(sampleToken(LOGITS, params({ temperature: 0 }), history(), rng).tokenId, 1);
    assert.equal(sampleToken(LOGITS, params({ temperature: 0 }), history(), rng, [1]).tokenId, 3);
    assert.equal(sampleToken(LOGITS, params({ temperature: 0 }), history(), rng, [1, 3]).tokenId, 5);
    assert.equal(rng.next(), Rng.fromSeed(1).next());
  });

  it("greedy sees the penalties", () => {
    const p = params({ temperature: 0, presencePenalty: 2 });
    assert.equal(sampleToken(LOGITS, p, history([[1, 1]]), Rng.fromSeed(1)).tokenId, 3);
  });

  it("uses exactly one rng.next() per sampled token", () => {
    const rng = Rng.fromSeed(3);
    sampleToken(LOGITS, params({ topK: 3, topP: 0.9, minP: 0.05 }), history(), rng);
    const reference = Rng.fromSeed(3);
    reference.next();
    assert.equal(rng.next(), reference.next());
  });

  it("repeats a sequence for a seed and differs for another seed", () => {
    const sequence = (seed: number) => {
      const rng = Rng.fromSeed(seed);
      return Array.from({ length: 40 }, () => sampleToken(LOGITS, params(), history(), rng).tokenId);
    };
    assert.deepEqual(sequence(42), sequence(42));
    assert.notDeepEqual(sequence(42), sequence(43));
  });

  it("draws with the frequencies of softmax(logits / T)", () => {
    const n = 20_000;
    for (const t of [0.7, 1, 1.5]) {
      assertFrequencies(drawCounts(LOGITS, params({ temperature: t }), n, 2024), refProbs(LOGITS, t), n);
    }
  });

  it("draws from the renormalised remainder after top-k", () => {
    const n = 20_000;
    const counts = drawCounts(LOGITS, params({ temperature: 0.8, topK: 3 }), n, 5);
    assertFrequencies(counts, refProbs(LOGITS, 0.8, new Set([1, 3, 5])), n);
  });

  it("never draws a banned token", () => {
    const n = 5_000;
    const counts = drawCounts(LOGITS, params({ temperature: 2 }), n, 9, [1, 3]);
    assert.equal(counts[1], 0);
    assert.equal(counts[3], 0);
    assertFrequencies(counts, refProbs(LOGITS, 2, new Set([0, 2, 4, 5])), n);
  });

  it("reports logprobs of the raw distribution, whatever the sampling transforms", () => {
    const ref = refLogprobs(LOGITS);
    const p = params({
      temperature: 0.5,
      topK: 4,
      presencePenalty: 1,
      repetitionPenalty: 1.3,
      logprobs: true,
      topLogprobs: 3,
    });
    const rng = Rng.fromSeed(17);
    for (let i = 0; i < 20; i++) {
      const s = sampleToken(LOGITS, p, history([[1, 2]], [1, 3]), rng, [0]);
      assert.ok(Math.abs(s.logprob! - ref[s.tokenId]!) < 1e-12);
      assert.deepEqual(
        s.topLogprobs.map((t) => t.tokenId),
        [1, 3, 5],
      );
      s.topLogprobs.forEach((t) => assert.ok(Math.abs(t.logprob - ref[t.tokenId]!) < 1e-12));
    }
  });

  it("returns topLogprobs sorted, of the requested length, only when asked", () => {
    const rng = Rng.fromSeed(4);
    const top = (over: Partial<SamplingParams>) => sampleToken(LOGITS, params(over), history(), rng).topLogprobs;
    assert.deepEqual(top({ logprobs: false, topLogprobs: 3 }), []);
    assert.deepEqual(top({ logprobs: true, topLogprobs: 0 }), []);
    const all = top({ logprobs: true, topLogprobs: 10 });
    assert.deepEqual(
      all.map((t) => t.tokenId),
      [1, 3, 5, 0, 2, 4],
    ); // capped at the vocabulary
    for (let i = 1; i < all.length; i++) assert.ok(all[i - 1]!.logprob >= all[i]!.logprob);
    assert.equal(top({ logprobs: true, topLogprobs: 2 }).length, 2);
  });

  it("does not modify the raw logits, even as a view into a larger buffer", () => {
    const buffer = new Float32Array(18).map((_, i) => Math.sin(i) * 3);
    const before = buffer.slice();
    const view = buffer.subarray(6, 12);
    const p = params({
      temperature: 0.9,
      topK: 2,
      topP: 0.8,
      minP: 0.1,
      presencePenalty: 1,
      frequencyPenalty: 1,
      repetitionPenalty: 1.5,
    });
    sampleToken(view, p, history([[0, 3]], [0, 1, 2]), Rng.fromSeed(0), [4]);
    sampleToken(view, params({ temperature: 0 }), history(), Rng.fromSeed(0), [4]);
    assert.deepEqual(buffer, before);
  });

  it("throws when every token is banned", () => {
    assert.throws(() => sampleToken(LOGITS, params(), history(), Rng.fromSeed(0), [0, 1, 2, 3, 4, 5]));
  });

  it("plain greedy (read in place) treats NaN and +Infinity as the sanitizing path does", () => {
    const F32_MAX = 3.4028234663852886e38;
    const greedy = params({ temperature: 0 });
    const pick = (xs: number[], banned?: number[]) =>
      sampleToken(Float32Array.from(xs), greedy, history(), Rng.fromSeed(0), banned).tokenId;
    // +Infinity counts as the largest float32: it ties with a finite F32_MAX, lowest id wins.
    assert.equal(pick([1, Number.NaN, F32_MAX, 2, Number.POSITIVE_INFINITY]), 2);
    assert.equal(pick([1, Number.NaN, F32_MAX, 2, Number.POSITIVE_INFINITY], [2]), 4);
    assert.equal(pick([Number.NaN, -1, Number.NaN]), 1);
    assert.throws(() => pick([Number.NaN, Number.NEGATIVE_INFINITY]), /no finite logit/);
    assert.throws(() => pick([Number.NaN, 5], [1]), /no finite logit/);
    // The same choices as the copying path (a logit bias of 0 on an id takes it) on seeded rows.
    const rng = Rng.fromSeed(9);
    for (let row = 0; row < 50; row++) {
      const xs = Array.from({ length: 300 }, () => Math.round((rng.next() - 0.5) * 40) / 4);
      const banned = [Math.floor(rng.next() * 300)];
      const copying = params({ temperature: 0, logitBias: [[0, 0]] });
      const want = sampleToken(Float32Array.from(xs), copying, history(), Rng.fromSeed(0), banned).tokenId;
      assert.equal(pick(xs, banned), want, `row ${row}`);
    }
  });

  it("leaves the sampled token's logprob out unless logprobs are asked for", () => {
    assert.equal(sampleToken(LOGITS, params({ temperature: 0 }), history(), Rng.fromSeed(0)).logprob, undefined);
    assert.equal(sampleToken(LOGITS, params(), history(), Rng.fromSeed(0)).logprob, undefined);
    const s = sampleToken(LOGITS, params({ temperature: 0, logprobs: true }), history(), Rng.fromSeed(0));
    assert.equal(s.logprob, 3 - Math.log([...LOGITS].reduce((a, x) => a + Math.exp(x), 0)));
  });
});

it("choice i of a seeded request draws like seed + i, and huge seeds do not overflow", () => {
  const a = Rng.forChoice(41, 1);
  const b = Rng.fromSeed(42);
  assert.deepEqual([a.next(), a.next()], [b.next(), b.next()]);
  const big = Rng.forChoice(Number.MAX_SAFE_INTEGER, 3);
  const again = Rng.forChoice(Number.MAX_SAFE_INTEGER, 3);
  assert.equal(big.next(), again.next());
  assert.notEqual(Rng.forChoice(Number.MAX_SAFE_INTEGER, 2).next(), Rng.forChoice(Number.MAX_SAFE_INTEGER, 3).next());
});

describe("greedyFromTop", () => {
  // LOGITS' top 4 as ONNX TopK gives them: 3 at id 1, the tie of 2 at ids 3 and 5 (lower id
  // first), 1 at id 0.
  const values = Float32Array.of(3, 2, 2, 1);
  const ids = BigInt64Array.of(1n, 3n, 5n, 0n);
  const full = (banned?: number[]) => sampleToken(LOGITS, greedySampling(), history(), new Rng(1), banned).tokenId;

  it("takes the first id not banned, as greedy over the whole row does", () => {
    for (const banned of [undefined, [], [1], [1, 3], [1, 3, 5], [4, 1]]) {
      assert.equal(greedyFromTop(values, ids, banned), full(banned), JSON.stringify(banned));
    }
    assert.deepEqual(
      [undefined, [1], [1, 3], [1, 3, 5]].map((b) => greedyFromTop(values, ids, b)),
      [1, 3, 5, 0],
    );
  });

  it("cannot decide when every top id is banned or a non-finite value comes first", () => {
    assert.equal(greedyFromTop(values, ids, [1, 3, 5, 0]), undefined);
    assert.equal(greedyFromTop(Float32Array.of(Infinity, 2), BigInt64Array.of(4n, 1n), []), undefined);
    assert.equal(greedyFromTop(Float32Array.of(Number.NaN, 2), BigInt64Array.of(4n, 1n), []), undefined);
    assert.equal(greedyFromTop(Float32Array.of(5, -Infinity), BigInt64Array.of(4n, 1n), [4]), undefined);
    // A non-finite value after the pick does not matter.
    assert.equal(greedyFromTop(Float32Array.of(5, Number.NaN), BigInt64Array.of(4n, 1n), []), 4);
  });

  it("is used only for greedy rows that change no logit and report no log-probs", () => {
    assert.equal(needsOnlyTopLogits(greedySampling()), true);
    assert.equal(needsOnlyTopLogits(greedySampling({ logprobs: true })), false);
    assert.equal(needsOnlyTopLogits(greedySampling({ temperature: 0.5 })), false);
    assert.equal(needsOnlyTopLogits(greedySampling({ logitBias: [[3, 1]] })), false);
    assert.equal(needsOnlyTopLogits(greedySampling({ repetitionPenalty: 1.1 })), false);
    assert.equal(needsOnlyTopLogits(greedySampling({ presencePenalty: 0.5 })), false);
  });
});
