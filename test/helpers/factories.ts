import { Sequence } from "../../src/engine/sequence.ts";
import type { GenerateRequest, SamplingParams } from "../../src/engine/types.ts";

/** Greedy sampling with nothing else switched on. */
export function greedySampling(over: Partial<SamplingParams> = {}): SamplingParams {
  return {
    temperature: 0, topP: 1, topK: 0, minP: 0, presencePenalty: 0, frequencyPenalty: 0, repetitionPenalty: 1,
    maxTokens: 16, stopTokenIds: [], stop: [], seed: 0, logprobs: false, topLogprobs: 0, ignoreEos: false, ...over,
  };
}

/** A generation sequence of the given prompt (unit tests of the scheduler and block manager). */
export function makeSeq(id: string, promptIds: number[], opts: { leaderId?: string } = {}): Sequence {
  const request: GenerateRequest = {
    kind: "generate", id, promptIds, sampling: greedySampling(),
    latent: { temperature: 0, returnVectors: false }, choiceIndex: 0, leaderId: opts.leaderId ?? null,
  };
  return new Sequence(request, 0);
}
