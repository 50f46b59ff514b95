import { buildApp } from "../src/app.ts";
import { DEFAULT_MODEL_DIR, parseConfig } from "../src/config.ts";
import type { EngineHandle, EngineObserver } from "../src/engine/engine-handle.ts";
import { engineInfo, type EngineInfo } from "../src/engine/engine-info.ts";
import type { EngineEvent } from "../src/engine/types.ts";
import { loadManifest, type Manifest } from "../src/model/manifest.ts";
import { ModelTokenizer } from "../src/model/tokenizer.ts";

/** The OpenAPI document without starting the engine: the app is built around an engine that runs
 * nothing (the document never depends on the engine). Used by scripts/openapi.ts and the drift test. */

class DocumentEngine implements EngineHandle {
  readonly alive = false;
  readonly stats = null;
  readonly inFlight = 0;
  readonly weightUpdates = { ok: 0, failed: 0, inProgress: null };
  constructor(readonly info: EngineInfo) {}
  get weightsVersion(): string {
    return this.info.weightsVersion;
  }
  observe(_o: EngineObserver): void {}
  generate(): AsyncIterableIterator<EngineEvent> {
    throw new Error("the OpenAPI generator runs no model");
  }
  score(): never {
    throw new Error("the OpenAPI generator runs no model");
  }
  abort(): void {}
  decodeThoughts(): never {
    throw new Error("the OpenAPI generator runs no model");
  }
  updateWeights(): never {
    throw new Error("the OpenAPI generator runs no model");
  }
  async close(): Promise<void> {}
}

/** The served facts of a model as if its whole context fitted the KV pool. */
export function documentInfo(manifest: Manifest, modelDir: string): EngineInfo {
  const blockSize = 16;
  const numBlocks = Math.ceil(Math.min(manifest.max_context, manifest.architecture.max_position) / blockSize);
  return engineInfo(manifest, { modelDir, numBlocks, blockSize, provider: "cpu", weightsVersion: "v0" });
}

export async function generateOpenApiDocument(): Promise<unknown> {
  const manifest = loadManifest(DEFAULT_MODEL_DIR);
  const app = await buildApp({
    config: parseConfig([], {}),
    engine: new DocumentEngine(documentInfo(manifest, DEFAULT_MODEL_DIR)),
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
