import { modelInfo, type ModelInfo } from "../model/model-info.ts";
import type { Manifest } from "../model/manifest.ts";
import type { ExecutionProvider } from "./options.ts";

/** The served model as the engine runs it: the manifest's facts (model-info.ts) plus what loading
 * decided. maxContext is the served context, which the KV pool may lower below the model's. */
export interface EngineInfo extends ModelInfo {
  modelDir: string;
  numBlocks: number;
  blockSize: number;
  provider: ExecutionProvider;
  /** The model's own context, before the KV pool's bound. */
  modelMaxContext: number;
  /** The weights' version at start (later ones: the engine handle's weightsVersion). */
  weightsVersion: string;
}

export interface LoadedFacts {
  modelDir: string;
  numBlocks: number;
  blockSize: number;
  provider: ExecutionProvider;
  weightsVersion: string;
}

export function engineInfo(manifest: Manifest, loaded: LoadedFacts): EngineInfo {
  const model = modelInfo(manifest);
  return {
    ...model,
    ...loaded,
    modelMaxContext: model.maxContext,
    maxContext: servedMaxContext(model.maxContext, loaded.numBlocks, loaded.blockSize),
  };
}

/** The context the server serves: the model's, lowered to what the KV pool holds, so that every
 * admitted request can run to its end alone (preemption then guarantees it finishes): a pool
 * smaller than one full context would otherwise fail requests mid-stream. */
export function servedMaxContext(modelMaxContext: number, numBlocks: number, blockSize: number): number {
  return Math.min(modelMaxContext, numBlocks * blockSize);
}
