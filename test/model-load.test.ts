import { test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadManifest, ManifestError } from "../src/model/manifest.ts";
import { ModelLoadError, Runner } from "../src/engine/runner.ts";
import { SHIPPED_MODEL } from "./helpers/python.ts";

const options = (modelDir: string, provider: "cpu" | "cuda" = "cpu") =>
  ({ modelDir, provider, threads: 1, graphOptimization: "basic", numBlocks: 4, blockSize: 16 }) as const;

/** A copy of the shipped model with its manifest edited. */
function withManifest(edit: (m: any) => void): string {
  const dir = mkdtempSync(join(tmpdir(), "nfcot-model-"));
  cpSync(SHIPPED_MODEL, dir, { recursive: true });
  const m = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"));
  edit(m);
  writeFileSync(join(dir, "manifest.json"), JSON.stringify(m));
  return dir;
}

async function loadError(dir: string, provider: "cpu" | "cuda" = "cpu"): Promise<Error> {
  try {
    await Runner.create(loadManifest(dir), options(dir, provider));
  } catch (e) {
    return e as Error;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.fail("the model loaded");
}

test("the shipped model loads and its manifest matches its graphs", async () => {
  const m = loadManifest(SHIPPED_MODEL);
  const r = await Runner.create(m, options(SHIPPED_MODEL));
  assert.equal(r.vocabSize, m.architecture.vocab_size);
  assert.equal(r.pool.length, 4 * r.blockFloats);
  await r.close();
});

test("a graph input the manifest names differently is refused, naming the file and the input", async () => {
  const e = await loadError(withManifest((m) => (m.graphs.backbone.inputs[0].name = "tokens")));
  assert.ok(e instanceof ModelLoadError);
  assert.match(e.message, /backbone\.onnx: manifest input 'tokens' is not in the graph/);
});

test("a dtype mismatch is refused with both dtypes", async () => {
  const e = await loadError(withManifest((m) => (m.graphs.backbone.inputs[3].dtype = "float32")));
  assert.match(e.message, /backbone\.onnx: input 'positions' is int64 in the graph, float32 in the manifest/);
});

test("a fixed dimension that disagrees with the graph is refused", async () => {
  const e = await loadError(withManifest((m) => (m.latent.thought_dim = 8)));
  assert.match(e.message, /input 'thought_inputs' dim 2 is 16 in the graph, 8 \(thought_dim\) in the manifest/);
});

test("a missing file and a malformed manifest are named", () => {
  const dir = withManifest((m) => (m.graphs.backbone.file = "nope.onnx"));
  assert.throws(() => loadManifest(dir), (e: Error) => e instanceof ManifestError && /names nope\.onnx, which is missing/.test(e.message));
  const dir2 = withManifest((m) => delete m.architecture);
  assert.throws(() => loadManifest(dir2), /manifest\.json: \/architecture/);
  rmSync(dir, { recursive: true, force: true });
  rmSync(dir2, { recursive: true, force: true });
});

test("asking for CUDA without its provider says so in plain words", async () => {
  const dir = mkdtempSync(join(tmpdir(), "nfcot-model-"));
  cpSync(SHIPPED_MODEL, dir, { recursive: true });
  const e = await loadError(dir, "cuda");
  assert.ok(e instanceof ModelLoadError);
  assert.match(e.message, /CUDA execution provider is not installed.*ONNXRUNTIME_NODE_INSTALL=cuda12/s);
});

test("the shipped model directory stays within 20 MB", async () => {
  const { readdirSync, statSync } = await import("node:fs");
  const bytes = readdirSync(SHIPPED_MODEL).reduce((s, f) => s + statSync(join(SHIPPED_MODEL, f)).size, 0);
  assert.ok(bytes <= 20 * 1024 * 1024, `${bytes} bytes`);
  assert.ok(bytes > 1024 * 1024, "the shipped model should hold real weights");
});
