import type { SamplingParams } from "./types.ts";

/** Sampling with every stage switched off: greedy, no penalties, no stops. Callers override
 * only what they use (the readiness probe, benchmarks, tests). */
export function greedySampling(over: Partial<SamplingParams> = {}): SamplingParams {
  return {
    temperature: 0,
    topP: 1,
    topK: 0,
    minP: 0,
    presencePenalty: 0,
    frequencyPenalty: 0,
    repetitionPenalty: 1,
    maxTokens: 16,
    stopTokenIds: [],
    stop: [],
    seed: 0,
    logprobs: false,
    topLogprobs: 0,
    ignoreEos: false,
    ...over,
  };
}

/** The engine's own range check, behind the API schema (which gives the OpenAI 400s): a request
 * that reaches the engine some other way with a value the samplers cannot use is refused alone
 * at add(). Null when valid, else what is wrong. */
export function samplingProblem(p: SamplingParams, latentTemperature: number): string | null {
  const checks: [boolean, string][] = [
    [p.temperature >= 0 && Number.isFinite(p.temperature), `temperature must be finite and >= 0, got ${p.temperature}`],
    [p.topP >= 0 && p.topP <= 1, `top_p must be in [0, 1], got ${p.topP}`],
    [Number.isInteger(p.topK) && p.topK >= 0, `top_k must be an integer >= 0, got ${p.topK}`],
    [p.minP >= 0 && p.minP <= 1, `min_p must be in [0, 1], got ${p.minP}`],
    [Number.isFinite(p.presencePenalty), `presence_penalty must be finite, got ${p.presencePenalty}`],
    [Number.isFinite(p.frequencyPenalty), `frequency_penalty must be finite, got ${p.frequencyPenalty}`],
    [
      p.repetitionPenalty > 0 && Number.isFinite(p.repetitionPenalty),
      `repetition_penalty must be finite and > 0, got ${p.repetitionPenalty}`,
    ],
    [Number.isInteger(p.maxTokens) && p.maxTokens >= 0, `max_tokens must be an integer >= 0, got ${p.maxTokens}`],
    [
      Number.isInteger(p.topLogprobs) && p.topLogprobs >= 0,
      `top_logprobs must be an integer >= 0, got ${p.topLogprobs}`,
    ],
    [
      p.minTokens === undefined || (Number.isInteger(p.minTokens) && p.minTokens >= 0),
      `min_tokens must be an integer >= 0, got ${p.minTokens}`,
    ],
    [
      (p.logitBias ?? []).every(([id, b]) => Number.isInteger(id) && Number.isFinite(b)),
      "logit_bias must map integer token ids to finite numbers",
    ],
    [
      latentTemperature >= 0 && Number.isFinite(latentTemperature),
      `latent_temperature must be finite and >= 0, got ${latentTemperature}`,
    ],
  ];
  return checks.find(([ok]) => !ok)?.[1] ?? null;
}
