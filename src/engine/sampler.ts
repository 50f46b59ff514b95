import type { Rng } from "./rng.ts";
import { SamplingError } from "./sampling-error.ts";
import type { SamplingParams, TopLogprob } from "./types.ts";

/** What the penalties look at, kept by the caller per sequence. */
export interface TokenHistory {
  /** Generated-token counts (presence / frequency penalties: OpenAI counts only the output). */
  counts: Map<number, number>;
  /** Prompt + generated token ids (repetition penalty: HF / vLLM count the prompt too). */
  seen: Set<number>;
}

export interface TokenSample {
  tokenId: number;
  /** With p.logprobs: log-probability of tokenId under the model's raw distribution (see
   * sampleToken). Left out otherwise: a log-sum-exp over a 152k vocabulary costs 1.5 ms a row. */
  logprob?: number;
  /** The p.topLogprobs most likely tokens of the raw distribution, descending; [] unless p.logprobs. */
  topLogprobs: TopLogprob[];
}

/** In place. Order as vLLM: repetition penalty over `seen` (positive logits divided, negative
 * multiplied, as HF), then frequency and presence over the generated counts (OpenAI:
 * logit -= presence * (count > 0) + frequency * count). Ids outside the vocabulary are skipped. */
export function applyPenalties(logits: Float32Array, history: TokenHistory, p: SamplingParams): void {
  const n = logits.length;
  if (p.repetitionPenalty !== 1) {
    for (const id of history.seen) {
      if (id < 0 || id >= n) continue;
      const x = logits[id];
      logits[id] = x > 0 ? x / p.repetitionPenalty : x * p.repetitionPenalty;
    }
  }
  if (p.presencePenalty !== 0 || p.frequencyPenalty !== 0) {
    for (const [id, count] of history.counts) {
      if (id < 0 || id >= n || count <= 0) continue;
      logits[id] = logits[id] - p.presencePenalty - p.frequencyPenalty * count;
    }
  }
}

/** In place: OpenAI's logit_bias, added to the logits (ids outside the vocabulary skipped). A
 * masked (-Infinity) logit stays masked. */
export function applyLogitBias(logits: Float32Array, bias: readonly (readonly [number, number])[] | undefined): void {
  if (!bias) return;
  for (const [id, b] of bias) if (id >= 0 && id < logits.length) logits[id] = logits[id] + b;
}

/** In place: -Infinity outside the k largest (0 = off). Ties with the k-th value are kept, as HF
 * and vLLM do (`logits < kth` is masked), so the kept set never depends on token order. */
export function applyTopK(logits: Float32Array, k: number): void {
  if (k <= 0 || k >= logits.length) return;
  const kth = kthLargest(logits.slice(), k);
  for (let i = 0; i < logits.length; i++) if (logits[i] < kth) logits[i] = -Infinity;
}

/** In place: zero every token beyond the nucleus, the smallest set of most likely tokens (ties:
 * lowest id first) whose mass reaches p of the total; the top token always stays (1 = off).
 * Without sorting the vocabulary: tokens are bucketed by their power of two (a bucket index never
 * increases with prob). Every bucket before the one where the mass reaches the target is kept
 * whole (the mass before any of its tokens is short of the target), every bucket after it goes,
 * and only that edge bucket is sorted. */
export function applyTopP(probs: Float64Array, p: number): void {
  if (p >= 1) return;
  let total = 0;
  for (let i = 0; i < probs.length; i++) total += probs[i];
  const target = Math.max(p, 0) * total;
  const bucket = powerOfTwoBuckets(probs);
  const mass = new Float64Array(BUCKETS);
  for (let i = 0; i < probs.length; i++) if (probs[i] > 0) mass[bucket(i)] += probs[i];
  let edge = 0;
  let before = 0; // mass of the buckets ahead of the edge one
  while (edge < BUCKETS - 1 && before + mass[edge] < target) before += mass[edge++];
  const candidates: number[] = [];
  for (let i = 0; i < probs.length; i++) {
    if (!(probs[i] > 0)) continue;
    const b = bucket(i);
    if (b === edge) candidates.push(i);
    else if (b > edge) probs[i] = 0;
  }
  candidates.sort((i, j) => probs[j] - probs[i] || i - j);
  let kept = before;
  for (const i of candidates) {
    // A token is kept while the mass before it is short of the target: the last one kept crosses it.
    if (kept >= target && kept > 0) probs[i] = 0;
    else kept += probs[i];
  }
}

const BUCKETS = 64;

/** Bucket of each positive prob: how many powers of two it lies below the largest (capped at
 * BUCKETS - 1), read from the float64 exponent bits (Math.log2 per token cost 2 ms a pass at a
 * 152k vocabulary). Little-endian: the high word of probs[i] is word 2i + 1. */
function powerOfTwoBuckets(probs: Float64Array): (i: number) => number {
  const words = new Uint32Array(probs.buffer, probs.byteOffset, probs.length * 2);
  let top = 0;
  for (let i = 0; i < probs.length; i++) if (probs[i] > 0) top = Math.max(top, (words[2 * i + 1] >>> 20) & 0x7ff);
  return (i) => Math.min(BUCKETS - 1, top - ((words[2 * i + 1] >>> 20) & 0x7ff));
}

/** In place: zero tokens with prob < minP * max prob (0 = off). minP is capped at 1, so the most
 * likely token always stays. */
export function applyMinP(probs: Float64Array, minP: number): void {
  if (minP <= 0) return;
  let max = 0;
  for (let i = 0; i < probs.length; i++) if (probs[i] > max) max = probs[i];
  const threshold = Math.min(minP, 1) * max;
  for (let i = 0; i < probs.length; i++) if (probs[i] < threshold) probs[i] = 0;
}

/** softmax(logits / temperature) in float64. Temperature <= 0 is the limit: one-hot on the argmax. */
export function softmax(logits: Float32Array, temperature: number): Float64Array {
  const probs = new Float64Array(logits.length);
  const top = argmax(logits);
  if (temperature <= 0) {
    probs[top] = 1;
    return probs;
  }
  const max = logits[top];
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    // Subtracting the max before dividing keeps tiny temperatures from overflowing exp.
    const e = Math.exp((logits[i] - max) / temperature);
    probs[i] = e;
    sum += e;
  }
  for (let i = 0; i < probs.length; i++) probs[i] = probs[i] / sum;
  return probs;
}

/** log softmax(logits) in float64 (the model's distribution at temperature 1). */
export function logSoftmax(logits: Float32Array): Float64Array {
  const lse = logSumExp(logits);
  const out = new Float64Array(logits.length);
  for (let i = 0; i < logits.length; i++) out[i] = logits[i] - lse;
  return out;
}

/** Samples one token. `rawLogits` is read only (it may be a view into the runner's output).
 * Pipeline (vLLM's order): banned ids -> -Infinity (no id is special here: the caller bans EOS
 * when it must, e.g. for min_tokens), logit bias, penalties, then temperature 0 = greedy argmax (ties: lowest id), else temperature, top-k,
 * softmax, top-p, min-p, and a draw from the renormalised remainder using exactly one rng.next(),
 * so a seeded request gives the same tokens whatever shares its batch.
 * `logprob` and `topLogprobs` come from log-softmax of the RAW logits, before bans, logit bias,
 * penalties and the sampling transforms: the model's own distribution, as vLLM reports by default
 * (logprobs_mode raw_logprobs), and what a scoring request or an RL trainer recomputes. */
export function sampleToken(
  rawLogits: Float32Array,
  p: SamplingParams,
  history: TokenHistory,
  rng: Rng,
  banned?: number[],
): TokenSample {
  let tokenId: number;
  if (greedyInPlace(p)) {
    // Plain greedy reads the raw logits in place: no copy, no pass to sanitize them.
    tokenId = greedyArgmax(rawLogits, banned);
  } else {
    const logits = scratch(rawLogits);
    if (banned) for (const id of banned) if (id >= 0 && id < logits.length) logits[id] = -Infinity;
    applyLogitBias(logits, p.logitBias);
    applyPenalties(logits, history, p);
    if (!sanitizeLogits(logits)) throw new SamplingError(NO_FINITE_LOGIT);
    if (p.temperature <= 0) {
      tokenId = argmax(logits);
    } else {
      applyTopK(logits, p.topK);
      const probs = softmax(logits, p.temperature);
      applyTopP(probs, p.topP);
      applyMinP(probs, p.minP);
      // Greedy when rounding or extreme parameters leave no probability mass to draw from.
      tokenId = draw(probs, rng.next()) ?? argmax(logits);
    }
  }
  if (!p.logprobs) return { tokenId, topLogprobs: [] };

  const raw = scratch(rawLogits);
  sanitizeLogits(raw);
  const lse = logSumExp(raw);
  return {
    tokenId,
    logprob: finiteLogprob(raw[tokenId] - lse),
    topLogprobs: topTokens(raw, p.topLogprobs, lse),
  };
}

const NO_FINITE_LOGIT = "the model gave no finite logit for any allowed token";

/** Greedy with nothing that changes the logits first: the argmax of the raw row. */
const greedyInPlace = (p: SamplingParams): boolean => p.temperature <= 0 && !p.logitBias?.length && !penalized(p);

/** Whether a row's token is the largest allowed raw logit and nothing else of the row is
 * reported: the backbone's top-k outputs decide it (greedyFromTop) without the logits. */
export const needsOnlyTopLogits = (p: SamplingParams): boolean => greedyInPlace(p) && !p.logprobs;

/** greedyArgmax's answer from a row's k largest logits (descending, ties lower id first, as
 * ONNX TopK gives them): the first id not banned. Undefined when the top-k cannot decide it as
 * greedyArgmax would over the whole row: every id banned, or a non-finite value reached (NaN is
 * never chosen there and +Infinity ties with the largest float32), so the caller needs the logits. */
export function greedyFromTop(
  values: Float32Array,
  ids: BigInt64Array,
  banned: number[] | undefined,
): number | undefined {
  for (let i = 0; i < values.length; i++) {
    const id = Number(ids[i]);
    if (!Number.isFinite(values[i]!)) return undefined;
    if (!banned?.includes(id)) return id;
  }
  return undefined;
}

const penalized = (p: SamplingParams): boolean =>
  p.repetitionPenalty !== 1 || p.presencePenalty !== 0 || p.frequencyPenalty !== 0;

/** One reused copy of the logits a row is sampled from (a fresh 600 KB copy per row at a 152k
 * vocabulary cost more than the argmax). Sampling is synchronous, so one buffer serves every row. */
let buffer = new Float32Array(0);
function scratch(logits: Float32Array): Float32Array {
  if (buffer.length < logits.length) buffer = new Float32Array(logits.length);
  const out = buffer.subarray(0, logits.length);
  out.set(logits);
  return out;
}

/** argmax over sanitized logits without sanitizing a copy: NaN is never chosen, +Infinity counts
 * as the largest float32 (ties: lowest id), banned ids are skipped. */
function greedyArgmax(logits: Float32Array, banned: number[] | undefined): number {
  let best = -1;
  let bestValue = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    const x = logits[i];
    if (x > bestValue) {
      if (banned?.includes(i)) continue;
      const v = x === Infinity ? FLOAT32_MAX : x;
      if (v > bestValue) {
        bestValue = v;
        best = i;
      }
    }
  }
  if (best < 0) throw new SamplingError(NO_FINITE_LOGIT);
  return best;
}

/** One teacher-forced position: log p(tokenId) of the raw logits, and when `top` is given its
 * rank (1 + the tokens strictly more likely, as vLLM ranks) and the `top` most likely tokens. */
export function scoreToken(
  rawLogits: Float32Array,
  tokenId: number,
  top?: number,
): { logprob: number; rank?: number; top?: TopLogprob[] } {
  const lp = logSoftmax(rawLogits);
  const logprob = lp[tokenId]!;
  if (top === undefined) return { logprob };
  const raw = rawLogits.slice();
  sanitizeLogits(raw);
  let above = 0;
  for (let i = 0; i < raw.length; i++) if (raw[i]! > raw[tokenId]!) above++;
  return { logprob, rank: above + 1, top: topTokens(raw, top, logSumExp(raw)) };
}

const FLOAT32_MAX = 3.4028234663852886e38;

/** In place: NaN -> -Infinity (never chosen), +Infinity -> the largest float32 (an extreme
 * penalty or temperature overflows to +Inf; Inf - Inf would be NaN in softmax), so every later
 * stage sees ordered, finite-or-masked values. False when every token is masked. */
export function sanitizeLogits(logits: Float32Array): boolean {
  let any = false;
  for (let i = 0; i < logits.length; i++) {
    const x = logits[i];
    if (Number.isNaN(x)) logits[i] = -Infinity;
    else if (x === Infinity) logits[i] = FLOAT32_MAX;
    if (logits[i] > -Infinity) any = true;
  }
  return any;
}

/** OpenAI's floor for log-probs of tokens the model rules out (JSON has no -Infinity). */
const MIN_LOGPROB = -9999;
const finiteLogprob = (x: number): number => Math.max(x, MIN_LOGPROB);

/** Index of the largest logit, lowest id on ties; throws when every token is masked. */
function argmax(logits: Float32Array): number {
  let best = -1;
  let bestValue = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    if (logits[i] > bestValue) {
      bestValue = logits[i];
      best = i;
    }
  }
  if (best < 0) throw new SamplingError("every token is masked (-Infinity)");
  return best;
}

function logSumExp(logits: Float32Array): number {
  const max = logits[argmax(logits)];
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  return max + Math.log(sum);
}

/** Inverse-CDF draw over unnormalised probs: scaling u by the total is the renormalisation.
 * Null when there is no mass to draw from (nothing left, or a non-finite total). */
function draw(probs: Float64Array, u: number): number | null {
  let total = 0;
  for (let i = 0; i < probs.length; i++) total += probs[i];
  if (!(total > 0 && Number.isFinite(total))) return null;
  const target = u * total;
  let cumulative = 0;
  let lastPositive = -1;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i] <= 0) continue;
    cumulative += probs[i];
    lastPositive = i;
    if (cumulative > target) return i;
  }
  // Only reached when rounding leaves the running sum just under the target.
  return lastPositive < 0 ? null : lastPositive;
}

/** The k-th largest value (1-based) by quickselect; reorders `values`. O(n), not a full sort. */
function kthLargest(values: Float32Array, k: number): number {
  let lo = 0;
  let hi = values.length - 1;
  const target = k - 1; // index in descending order
  while (lo < hi) {
    const pivot = values[(lo + hi) >>> 1];
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (values[i] > pivot) i++;
      while (values[j] < pivot) j--;
      if (i <= j) {
        const t = values[i];
        values[i] = values[j];
        values[j] = t;
        i++;
        j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else return values[target];
  }
  return values[target];
}

/** The n largest logits as logprobs, descending, lowest id first on ties. */
function topTokens(logits: Float32Array, n: number, lse: number): TopLogprob[] {
  const count = Math.min(Math.max(n, 0), logits.length);
  if (count === 0) return [];
  // Small sorted buffer (n <= 20 in the OpenAI API): most logits fail the first comparison.
  const ids: number[] = [];
  for (let i = 0; i < logits.length; i++) {
    const x = logits[i];
    if (ids.length === count && !(x > logits[ids[count - 1]])) continue;
    let pos = ids.length === count ? count - 1 : ids.length;
    while (pos > 0 && x > logits[ids[pos - 1]]) pos--;
    if (ids.length === count) ids.pop();
    ids.splice(pos, 0, i);
  }
  return ids.map((tokenId) => ({ tokenId, logprob: finiteLogprob(logits[tokenId] - lse) }));
}
