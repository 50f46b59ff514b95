import type { EngineEvent } from "../engine/types.ts";

export type FinishEvent = Extract<EngineEvent, { type: "finish" }>;

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  completion_tokens_details: { reasoning_tokens: number };
  prompt_tokens_details: { cached_tokens: number };
}

/** Prompts count once per prompt (not per choice, as OpenAI counts n); thoughts count as
 * completion tokens and again as reasoning tokens, as do a trace's text tokens (`traceTokens`,
 * per choice). */
export function usageOf(finishes: (FinishEvent | null)[], n: number, traceTokens: number[] = []): Usage {
  let prompt = 0;
  let completion = 0;
  let reasoning = 0;
  let cached = 0;
  finishes.forEach((f, i) => {
    if (!f) return;
    if (i % n === 0) {
      prompt += f.promptTokens;
      cached += f.cachedTokens;
    }
    completion += f.completionTokens + f.thoughts;
    reasoning += f.thoughts + (traceTokens[i] ?? 0);
  });
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    completion_tokens_details: { reasoning_tokens: reasoning },
    prompt_tokens_details: { cached_tokens: cached },
  };
}
