import type { EngineInfo } from "../engine/engine-info.ts";
import type { LatentParams, SamplingParams } from "../engine/types.ts";
import { ServeError } from "../errors.ts";
import type { Prompt } from "../model/prompt.ts";

/** OpenAI request fields -> the engine's SamplingParams and LatentParams, with OpenAI defaults. */

export interface SamplingFields {
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  min_p?: number | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  repetition_penalty?: number | null;
  stop?: string | string[] | null;
  seed?: number | null;
  ignore_eos?: boolean | null;
  stop_token_ids?: number[] | null;
  logit_bias?: Record<string, number> | null;
  min_tokens?: number | null;
}

export function toSampling(
  f: SamplingFields,
  maxTokens: number,
  logprobs: { enabled: boolean; top: number },
): SamplingParams {
  if ((f.min_tokens ?? 0) > maxTokens) {
    throw new ServeError(
      "invalid_request",
      `min_tokens (${f.min_tokens}) must be at most max_tokens (${maxTokens}).`,
      "min_tokens",
    );
  }
  const stop = f.stop === undefined || f.stop === null ? [] : typeof f.stop === "string" ? [f.stop] : f.stop;
  return {
    temperature: f.temperature ?? 1,
    topP: f.top_p ?? 1,
    topK: Math.max(0, f.top_k ?? 0), // -1 (vLLM's "off") and 0 both mean off
    minP: f.min_p ?? 0,
    presencePenalty: f.presence_penalty ?? 0,
    frequencyPenalty: f.frequency_penalty ?? 0,
    repetitionPenalty: f.repetition_penalty ?? 1,
    maxTokens,
    stopTokenIds: f.stop_token_ids ?? [],
    stop: stop.filter((s) => s.length > 0),
    seed: f.seed ?? null,
    logprobs: logprobs.enabled,
    topLogprobs: logprobs.enabled ? logprobs.top : 0,
    ignoreEos: f.ignore_eos ?? false,
    ...(f.logit_bias
      ? { logitBias: Object.entries(f.logit_bias).map(([id, b]): [number, number] => [Number(id), b]) }
      : {}),
    ...(f.min_tokens ? { minTokens: f.min_tokens } : {}),
  };
}

/** The engine returns the vectors when the client asked for them, and also when the model has a
 * thought decoder: every full span is decoded to its trace text. The thoughts' T_z is the
 * request's latent_temperature, else 0 when the text is greedy (temperature 0: the same request
 * gives the same answer every time), else the model's default. */
export function toLatent(
  info: EngineInfo,
  r: { latent_temperature?: number; return_thoughts?: boolean; return_flow_log_det?: boolean } | null | undefined,
  textTemperature: number | null | undefined,
): LatentParams {
  const flow = r?.return_flow_log_det ?? false;
  if (flow && !info.hasFlow) {
    throw new ServeError(
      "invalid_request",
      "This model ships no shallow flow graphs: there is no flow log-det to return.",
      "reasoning.return_flow_log_det",
    );
  }
  return {
    temperature: r?.latent_temperature ?? (textTemperature === 0 ? 0 : info.defaultLatentTemperature),
    returnVectors: (r?.return_thoughts ?? false) || info.hasThoughtDecoder,
    ...(flow ? { returnFlowLogDet: true } : {}),
  };
}

/** The completion budget, as OpenAI counts it: reasoning positions (a latent prompt's K thoughts)
 * count toward max_completion_tokens / max_tokens, so a budget must hold them plus one answer
 * token. Returns the text tokens left for the engine. Absent: whatever fits the context. Errors
 * state the limit, the minimum and the requested total. */
export function budgetMaxTokens(
  info: EngineInfo,
  prompt: Prompt,
  requested: { value: number | null | undefined; param: string },
  promptParam: string,
): number {
  const maxContext = info.maxContext;
  const promptTokens = prompt.ids.length;
  const thoughts = prompt.opensLatentSpan ? info.numThoughts : 0;
  const completion = requested.value ?? Math.max(thoughts + 1, maxContext - promptTokens);
  if (thoughts > 0 && completion < thoughts + 1) {
    throw new ServeError(
      "invalid_request",
      `${requested.param} is ${completion}, but this request reasons in ${thoughts} latent thoughts, which count as completion ` +
        `(reasoning) tokens: it must be at least ${thoughts + 1} (the thoughts and one answer token).`,
      requested.param,
    );
  }
  if (promptTokens + completion > maxContext) {
    const where = promptParam === "prompt" ? "prompt" : "messages";
    throw new ServeError(
      "context_length_exceeded",
      `This model's maximum context length is ${maxContext} tokens. However, you requested ${promptTokens + completion} tokens ` +
        `(${promptTokens} in the ${where}, ${completion} in the completion, of which ${thoughts} latent thoughts). ` +
        `Please reduce the length of the ${where} or the completion.`,
      promptParam,
    );
  }
  return completion - thoughts;
}
