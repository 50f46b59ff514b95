import { DEFAULT_MODEL_DIR, parseConfig } from "../config.ts";
import type { EngineClient } from "../engine/client.ts";
import type { ModelInfo } from "../engine/options.ts";
import { modelInfoFrom } from "../engine/model-info.ts";
import { loadManifest, type Manifest } from "../model/manifest.ts";
import { ModelTokenizer } from "../model/tokenizer.ts";
import { buildApp } from "../app.ts";

/** The OpenAPI document without starting the engine: the app is built around a stand-in engine
 * that only answers `info` (the document never depends on the engine). Used by
 * scripts/openapi.ts and by the drift test. */

export function standInEngine(manifest: Manifest, modelDir: string): EngineClient {
  const info: ModelInfo = modelInfoFrom(manifest, {
    modelDir,
    numBlocks: 1,
    blockSize: 16,
    hasThoughtDecoder: manifest.graphs.thought_decoder !== undefined,
    provider: "cpu",
  });
  return { info: { ...info, weightsVersion: "v0", hasFlow: manifest.graphs.flow_forward !== undefined && manifest.graphs.flow_inverse !== undefined }, alive: false, inFlight: 0, stats: null, weightsVersion: "v0" } as unknown as EngineClient;
}

export async function generateOpenApiDocument(): Promise<unknown> {
  const manifest = loadManifest(DEFAULT_MODEL_DIR);
  const app = await buildApp({
    config: parseConfig([], {}),
    engine: standInEngine(manifest, DEFAULT_MODEL_DIR),
    tokenizer: new ModelTokenizer(DEFAULT_MODEL_DIR, manifest),
    manifest,
  });
  try {
    await app.ready();
    return app.swagger();
  } finally {
    await app.close();
  }
}
