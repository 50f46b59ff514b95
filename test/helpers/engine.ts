import { EngineClient, type EngineLog } from "../../src/engine/client.ts";
import { DEFAULT_ENGINE_OPTIONS, type EngineOptions } from "../../src/engine/options.ts";
import type { EngineEvent, GenerateRequest, SamplingParams } from "../../src/engine/types.ts";
import type { ReasoningMode } from "../../src/model/manifest.ts";
import { loadManifest } from "../../src/model/manifest.ts";
import { modelInfo } from "../../src/model/model-info.ts";
import { chatPrompt } from "../../src/model/prompt.ts";
import { ModelTokenizer } from "../../src/model/tokenizer.ts";
import { greedySampling } from "./factories.ts";
import { SHIPPED_MODEL } from "./python.ts";
import { loadTestSplit, type TestProgram } from "../../bench/lib/test-split.ts";

export type { TestProgram };

/** The task's test split, as written by `python -m nfcot.task test 1000`. */
export const TEST_PROGRAMS: TestProgram[] = loadTestSplit();

export const manifest = loadManifest(SHIPPED_MODEL);
export const tokenizer = new ModelTokenizer(SHIPPED_MODEL, manifest);

export function startEngine(over: Partial<EngineOptions> = {}, log?: EngineLog): Promise<EngineClient> {
  return EngineClient.start({ ...DEFAULT_ENGINE_OPTIONS, modelDir: SHIPPED_MODEL, threads: 1, ...over }, log);
}

export function sampling(over: Partial<SamplingParams> = {}): SamplingParams {
  return greedySampling({ maxTokens: 32, seed: null, ...over });
}

let counter = 0;
export function request(
  source: string,
  mode: ReasoningMode,
  over: Partial<GenerateRequest> = {},
  s: Partial<SamplingParams> = {},
): GenerateRequest {
  const prompt = chatPrompt(tokenizer, modelInfo(manifest), [{ role: "user", content: source }], { mode });
  return {
    kind: "generate",
    id: `t${counter++}`,
    promptIds: prompt.ids,
    opensLatentSpan: prompt.opensLatentSpan,
    sampling: sampling(s),
    latent: { temperature: 0.9, returnVectors: false },
    choiceIndex: 0,
    leaderId: null,
    ...over,
  };
}

export interface Outcome {
  tokens: number[];
  text: string;
  thoughtLogProbs: number[];
  finish: Extract<EngineEvent, { type: "finish" }> | null;
  error: string | null;
}

export async function collect(it: AsyncIterable<EngineEvent>, stopAfterTokens = Infinity): Promise<Outcome> {
  const o: Outcome = { tokens: [], text: "", thoughtLogProbs: [], finish: null, error: null };
  for await (const e of it) {
    if (e.type === "token") {
      o.tokens.push(e.tokenId);
      o.text += e.text;
      if (o.tokens.length >= stopAfterTokens) break; // leaving the loop aborts the request
    } else if (e.type === "thought") o.thoughtLogProbs.push(e.logProb);
    else if (e.type === "finish") {
      o.finish = e;
      o.text += e.tail;
    } else if (e.type === "error") o.error = e.message;
  }
  return o;
}

/** Waits until the worker has published stats with nothing in flight. */
export async function idleStats(engine: EngineClient) {
  for (let i = 0; i < 200; i++) {
    const s = engine.stats;
    if (s && s.running === 0 && s.waiting === 0 && engine.inFlight === 0) return s;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`engine did not go idle: ${JSON.stringify(engine.stats)}`);
}
