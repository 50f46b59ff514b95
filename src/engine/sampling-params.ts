import type { SamplingParams } from "./types.ts";

/** Sampling with every stage switched off: greedy, no penalties, no stops. Callers override
 * only what they use (the readiness probe, benchmarks, tests). */
export function greedySampling(over: Partial<SamplingParams> = {}): SamplingParams {
  return {
    temperature: 0, topP: 1, topK: 0, minP: 0, presencePenalty: 0, frequencyPenalty: 0, repetitionPenalty: 1,
    maxTokens: 16, stopTokenIds: [], stop: [], seed: 0, logprobs: false, topLogprobs: 0, ignoreEos: false, ...over,
  };
}
