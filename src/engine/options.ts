import type { Config } from "../config.ts";
import type { ExecutionProvider } from "./runner.ts";

/** Everything the engine worker needs to start; plain data (it crosses postMessage). */
export interface EngineOptions {
  modelDir: string;
  provider: ExecutionProvider;
  threads: number;
  graphOptimization: "disabled" | "basic" | "extended" | "all";
  blockSize: number;
  /** KV pool size: numBlocks wins when set, else kvCacheBytes is divided by the block size in bytes. */
  numBlocks: number | null;
  kvCacheBytes: number;
  maxNumSeqs: number;
  maxNumBatchedTokens: number;
  enablePrefixCaching: boolean;
}

export const DEFAULT_ENGINE_OPTIONS: Omit<EngineOptions, "modelDir"> = {
  provider: "cpu",
  threads: 0,
  graphOptimization: "all",
  blockSize: 16,
  numBlocks: null,
  kvCacheBytes: 256 * 1024 * 1024,
  maxNumSeqs: 64,
  maxNumBatchedTokens: 2048,
  enablePrefixCaching: true,
};

export interface ModelInfo {
  name: string;
  modelDir: string;
  numBlocks: number;
  blockSize: number;
  maxContext: number;
  numThoughts: number; // 0 for a text-only model
  thoughtDim: number;
  defaultLatentTemperature: number;
  /** Why latent reasoning is unavailable (a text-only model), or null. */
  latentUnavailable: string | null;
  reasoningModes: ("none" | "explicit" | "latent")[];
  defaultReasoningMode: "none" | "explicit" | "latent";
  hasThoughtDecoder: boolean;
  special: { eos: number; bos?: number; bot?: number; eot?: number; pad?: number; unk?: number };
  /** Every id that ends generation (special.eos included). */
  eosTokenIds: number[];
  vocabSize: number;
  provider: ExecutionProvider;
  /** The weights' version at start (later ones: EngineClient.weightsVersion). */
  weightsVersion?: string;
  /** Ships the shallow flow graphs (flow log-dets can be asked for). */
  hasFlow?: boolean;
}

/** The engine's part of the server config. */
export function engineOptionsFrom(config: Config): EngineOptions {
  return {
    ...DEFAULT_ENGINE_OPTIONS,
    modelDir: config.modelDir,
    provider: config.provider,
    threads: config.threads,
    graphOptimization: config.graphOptimization,
    blockSize: config.blockSize,
    numBlocks: config.kvCacheBlocks > 0 ? config.kvCacheBlocks : null,
    kvCacheBytes: config.kvCacheBytes,
    maxNumSeqs: config.maxNumSeqs,
    maxNumBatchedTokens: config.maxNumBatchedTokens,
    enablePrefixCaching: config.enablePrefixCaching,
  };
}

/** The context the server serves: the model's, lowered to what the KV pool holds, so that every
 * admitted request can run to its end alone (preemption then guarantees it finishes): a pool
 * smaller than one full context would otherwise fail requests mid-stream. */
export function servedMaxContext(modelMaxContext: number, numBlocks: number, blockSize: number): number {
  return Math.min(modelMaxContext, numBlocks * blockSize);
}
