import { type Static, Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";

/** The engine's settings: one schema for their types, bounds and defaults. The server config
 * composes it (a flag and an environment variable each), so nothing here knows about the server. */

export const ExecutionProviderSchema = Type.Union([Type.Literal("cpu"), Type.Literal("cuda")], { default: "cpu" });
export type ExecutionProvider = Static<typeof ExecutionProviderSchema>;

export const GraphOptimizationSchema = Type.Union(
  [Type.Literal("disabled"), Type.Literal("basic"), Type.Literal("extended"), Type.Literal("all")],
  { default: "all" },
);
export type GraphOptimization = Static<typeof GraphOptimizationSchema>;

export const EngineSettingsSchema = Type.Object({
  provider: ExecutionProviderSchema,
  // Intra-op threads; 0: onnxruntime's default.
  threads: Type.Integer({ minimum: 0, maximum: 256, default: 0 }),
  // Intra-op threads spin between kernels instead of sleeping: faster steps on cores the server
  // has to itself, a core kept busy, and slower under contention (README, "Spinning threads").
  threadSpinning: Type.Boolean({ default: false }),
  graphOptimization: GraphOptimizationSchema,
  // KV pool size: kvCacheBlocks wins when > 0, else kvCacheBytes over the bytes of one block.
  kvCacheBytes: Type.Integer({ minimum: 1, default: 256 * 1024 * 1024 }),
  kvCacheBlocks: Type.Integer({ minimum: 0, default: 0 }),
  blockSize: Type.Integer({ minimum: 1, maximum: 1024, default: 16 }),
  enablePrefixCaching: Type.Boolean({ default: true }),
  maxNumSeqs: Type.Integer({ minimum: 1, maximum: 4096, default: 64 }),
  maxNumBatchedTokens: Type.Integer({ minimum: 1, default: 2048 }),
});
export type EngineSettings = Static<typeof EngineSettingsSchema>;

/** Everything the engine worker needs to start; plain data (it crosses postMessage). */
export const EngineOptionsSchema = Type.Composite([
  Type.Object({ modelDir: Type.String({ minLength: 1 }) }),
  EngineSettingsSchema,
]);
export type EngineOptions = Static<typeof EngineOptionsSchema>;

export const DEFAULT_ENGINE_OPTIONS: EngineSettings = Value.Create(EngineSettingsSchema);

/** The engine's part of a larger settings object (the server config): only the engine's keys
 * cross to the worker thread. */
export function engineOptionsFrom(settings: EngineOptions): EngineOptions {
  return Value.Clean(EngineOptionsSchema, { ...settings }) as EngineOptions;
}

/** Blocks in the KV pool, given the bytes one block takes. */
export function kvPoolBlocks(options: EngineSettings, bytesPerBlock: number): number {
  return options.kvCacheBlocks > 0
    ? options.kvCacheBlocks
    : Math.max(1, Math.floor(options.kvCacheBytes / bytesPerBlock));
}
