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
