/** Types shared by the engine (worker thread) and its client (HTTP thread). Plain data only:
 * everything here crosses `postMessage`. */

export type FinishReason = "stop" | "length" | "abort";

export interface SamplingParams {
  temperature: number; // 0 = greedy
  topP: number; // 1 = off
  topK: number; // 0 = off
  minP: number; // 0 = off
  presencePenalty: number;
  frequencyPenalty: number;
  repetitionPenalty: number; // 1 = off
  maxTokens: number; // text tokens; thoughts are bounded by the model's K
  stopTokenIds: number[];
  stop: string[];
  seed: number | null; // null = drawn at random
  logprobs: boolean;
  topLogprobs: number;
  ignoreEos: boolean;
  /** OpenAI's logit_bias: [token id, bias] added to the logits before sampling (greedy too). */
  logitBias?: [number, number][];
  /** vLLM's min_tokens: EOS and stopTokenIds are masked, and stop strings not matched, until
   * this many text tokens have been generated. */
  minTokens?: number;
}

export interface LatentParams {
  temperature: number; // T_z; 0 gives u = mu
  returnVectors: boolean;
  /** Run the flow on each finished span: log |det dF/de| at e = F^-1(u) (a "flow" event). */
  returnFlowLogDet?: boolean;
}

export interface GenerateRequest {
  kind: "generate";
  id: string;
  promptIds: number[];
  /** The prompt ends in <bot>: its K thoughts come first (src/model/prompt.ts decides it). */
  opensLatentSpan: boolean;
  /** The vectors of the prompt's thought positions (THOUGHT in promptIds), in order: an earlier
   * latent turn carried back. Absent: the prompt has none. */
  promptThoughts?: Float32Array[];
  sampling: SamplingParams;
  latent: LatentParams;
  /** Index of this choice among n (the seed of choice i is seed + i). */
  choiceIndex: number;
  /** Id of the request whose prompt this one shares; it waits until that prompt is cached. */
  leaderId: string | null;
  /** The weights that must run it (stamped by the client; absent: whatever is serving). */
  weightsVersion?: string;
  /** Scheduled ahead of all other work, never preempted (the readiness probe: it must measure
   * whether the engine can serve, not whether it is idle). Never set from a client request. */
  priority?: boolean;
}

/** Teacher-forced scoring: prompt, then given thoughts (entered after the prompt), then answer. */
export interface ScoreRequest {
  kind: "score";
  id: string;
  promptIds: number[];
  thoughts: Float32Array[];
  answerIds: number[];
  /** T_z of the behaviour density to report beside the T_z = 1 one (absent or 0: none). */
  temperature?: number;
  returnFlowLogDet?: boolean;
  /** Given (0 included): per answer position also the given token's rank and this many most likely tokens. */
  topLogprobs?: number;
  weightsVersion?: string;
}

export type EngineRequest = GenerateRequest | ScoreRequest;

export interface TopLogprob {
  tokenId: number;
  logprob: number;
}

/** A teacher-forced token: its log-prob; with topLogprobs asked, its rank (1 = most likely) and
 * the most likely tokens at that position. */
export interface ScoredToken {
  tokenId: number;
  logprob: number;
  rank?: number;
  top?: TopLogprob[];
}

export type EngineEvent =
  | {
      type: "token";
      id: string;
      tokenId: number;
      text: string; // released text: held back while a multi-token character is incomplete or it may start a stop string
      /** With logprobs: this token's own text as the detokenizer emitted it ("" for part of a
       * character), before stop strings hold or cut it. */
      piece?: string;
      logprob?: number;
      topLogprobs?: TopLogprob[];
    }
  | {
      type: "thought";
      id: string;
      index: number;
      /** log N(u; mu, sigma^2): the model's density at T_z = 1. */
      logProb: number;
      /** log N(u; mu, (T_z sigma)^2): the density that drew it; null at T_z = 0 (u = mu, no density). */
      behaviourLogProb: number | null;
      vector?: Float32Array;
    }
  /** After a span's K-th thought, when asked: log |det dF/de| of the shallow flow at e = F^-1(u). */
  | { type: "flow"; id: string; logDet: number }
  | {
      type: "finish";
      id: string;
      reason: FinishReason;
      promptTokens: number;
      completionTokens: number;
      thoughts: number;
      cachedTokens: number;
      queueTimeMs: number;
      tail: string; // text released at the end (held back earlier as a possible stop-string prefix)
      weightsVersion?: string; // the weights that ran it
    }
  | {
      type: "score";
      id: string;
      thoughtLogProbs: number[];
      /** At the request's temperature; null entries when it is 0 or absent. */
      thoughtBehaviourLogProbs: (number | null)[];
      answerLogprobs: ScoredToken[];
      flowLogDet?: number;
      weightsVersion?: string;
    }
  | { type: "error"; id: string; code: string; message: string };

export interface EngineStats {
  running: number;
  waiting: number;
  kvBlocksTotal: number;
  kvBlocksUsed: number;
  prefixCacheQueries: number; // positions looked up
  prefixCacheHits: number; // positions found
  preemptions: number;
  steps: number;
  lastStepMs: number;
  lastBatchPositions: number;
  lastBatchSequences: number;
  promptTokens: number;
  generationTokens: number;
  thoughts: number;
  topLogitsFallbacks: number; // greedy steps run again with the logits: a row's bans covered its top k
}

/** One engine step, for per-iteration metrics. */
export interface StepRecord {
  ms: number;
  positions: number; // positions computed (prompt chunks + decode + thought steps)
  sequences: number;
}
