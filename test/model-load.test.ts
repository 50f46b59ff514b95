import { test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ort from "onnxruntime-node";
import { loadManifest, ManifestError, resolveDim } from "../src/model/manifest.ts";
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

test("a new KV pool is committed memory at creation, not mapped lazily into later steps", async () => {
  const m = loadManifest(SHIPPED_MODEL);
  const probe = await Runner.create(m, options(SHIPPED_MODEL));
  const perBlock = probe.blockFloats * 4;
  await probe.close();
  // 256 MiB of pool: were its pages left to their first write (inside some later step), the
  // process would grow by the session's few MiB only.
  const numBlocks = Math.ceil(2 ** 28 / perBlock);
  const before = process.memoryUsage().rss;
  const r = await Runner.create(m, { ...options(SHIPPED_MODEL), numBlocks });
  const grown = process.memoryUsage().rss - before;
  assert.ok(grown >= numBlocks * perBlock, `RSS grew ${grown} bytes for a ${numBlocks * perBlock}-byte pool`);
  assert.ok(r.pool.every((x) => x === 0));
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
  assert.throws(
    () => loadManifest(dir),
    (e: Error) => e instanceof ManifestError && /names nope\.onnx, which is missing/.test(e.message),
  );
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

test("every shipped graph runs to the shapes and dtypes its manifest entry states (names in order)", async () => {
  const m = loadManifest(SHIPPED_MODEL);
  // Concrete sizes for the symbolic dims; model-size dims resolve through the manifest.
  const sizes: Record<string, number> = {
    batch: 2,
    seq: 3,
    num_blocks: 5,
    block_size: 4,
    max_blocks: 2,
    num_outputs: 4,
  };
  const dim = (d: string | number) => {
    const r = resolveDim(m, d);
    if (typeof r === "number") return r;
    assert.ok(r in sizes, `manifest dim '${r}' is neither a model size nor a known symbolic dim`);
    return sizes[r]!;
  };
  assert.deepEqual(Object.keys(m.graphs), ["backbone", "flow_forward", "flow_inverse", "thought_decoder"]);
  for (const [name, spec] of Object.entries(m.graphs)) {
    const s = await ort.InferenceSession.create(join(SHIPPED_MODEL, spec!.file));
    try {
      assert.deepEqual(
        s.inputNames,
        spec!.inputs.map((i) => i.name),
        `${name} inputs`,
      );
      assert.deepEqual(
        s.outputNames,
        spec!.outputs.map((o) => o.name),
        `${name} outputs`,
      );
      const feeds: Record<string, ort.Tensor> = {};
      for (const i of spec!.inputs) {
        const shape = i.shape.map(dim);
        const n = shape.reduce((a, b) => a * b, 1);
        // Zeros are valid everywhere: token 0, position 0, block 0, empty past; gather rows 0..3.
        feeds[i.name] =
          i.dtype === "int64"
            ? new ort.Tensor(
                "int64",
                i.name === "gather_index" ? BigInt64Array.from([0n, 1n, 2n, 5n]) : new BigInt64Array(n),
                shape,
              )
            : new ort.Tensor("float32", new Float32Array(n), shape);
      }
      const out = await s.run(feeds);
      for (const o of spec!.outputs) {
        assert.deepEqual(out[o.name]!.dims, o.shape.map(dim), `${name} output ${o.name} shape`);
        assert.equal(out[o.name]!.type, o.dtype, `${name} output ${o.name} dtype`);
      }
    } finally {
      await s.release();
    }
  }
  assert.equal(m.architecture.head_dim * m.architecture.num_heads, m.architecture.hidden_size);
  assert.equal(m.graphs.thought_decoder!.stop_token_id, m.special_tokens.eot);
  assert.deepEqual(m.kv_cache.layout, m.graphs.backbone.inputs.find((i) => i.name === "kv_pool")!.shape);
});
