import { test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { Runner } from "../src/engine/runner.ts";
import { loadManifest } from "../src/model/manifest.ts";
import { THOUGHT } from "../src/model/positions.ts";
import { ModelTokenizer } from "../src/model/tokenizer.ts";
import { MODELS_DIR, SHIPPED_MODEL, runPython } from "./helpers/python.ts";
import { confidentFlips, relErr } from "./helpers/compare-logits.ts";
import { ORT_PYTHON } from "../bench/lib/ort-python.ts";
import { loadTestSplit } from "../bench/lib/test-split.ts";

/** The shipped model's own weights re-exported with `--attention fused` (models/nfcot/fused.py:
 * decode steps of up to 8 rows through onnxruntime's GroupQueryAttention) against the shipped
 * plain graph, through the real runner: a prefill, then decode steps whose odd rows are thought
 * steps, with 6 rows (the fused path) and with 10 (the plain branch of the same graph). */
const manifest = loadManifest(SHIPPED_MODEL);
const tokenizer = new ModelTokenizer(SHIPPED_MODEL, manifest);
const sequences = loadTestSplit()
  .slice(40, 50)
  .map((p) => [manifest.special_tokens.bos!, ...tokenizer.encode(`${p.source}\n${p.trace}`)].slice(0, 36));
const PREFILL = 6;
const D = manifest.latent!.thought_dim;

async function decode(dir: string, rows: number): Promise<{ logits: Float32Array; mu: Float32Array }> {
  const runner = await Runner.create(loadManifest(dir), {
    modelDir: dir,
    provider: "cpu",
    threads: 1,
    graphOptimization: "all",
    numBlocks: rows * 3,
    blockSize: 16,
  });
  const seqs = sequences.slice(0, rows);
  const tables = seqs.map((_, b) => [b * 3, b * 3 + 1, b * 3 + 2]);
  const logits: number[] = [];
  const mu: number[] = [];
  try {
    await runner.forward(
      seqs.map((s, b) => ({
        tokens: s.slice(0, PREFILL),
        thoughts: s.slice(0, PREFILL).map(() => null),
        start: 0,
        blockTable: tables[b]!,
        outputs: [],
      })),
    );
    const len = Math.min(...seqs.map((s) => s.length));
    for (let p = PREFILL; p < len; p++) {
      const out = await runner.forward(
        seqs.map((s, b) => {
          const thought = b % 2 === 1 && p % 3 === 0;
          const vec = Float32Array.from({ length: D }, (_, i) => Math.sin(b + 0.7 * p + 0.3 * i));
          return {
            tokens: [thought ? THOUGHT : s[p]!],
            thoughts: [thought ? vec : null],
            start: p,
            blockTable: tables[b]!,
            outputs: [p],
          };
        }),
      );
      logits.push(...out.logits);
      mu.push(...out.mu);
    }
  } finally {
    await runner.close();
  }
  return { logits: new Float32Array(logits), mu: new Float32Array(mu) };
}

function quantizeKv(dir: string): void {
  const r = spawnSync(ORT_PYTHON, ["-m", "nfcot.quantize", dir, "--kv-dtype", "float16"], {
    cwd: MODELS_DIR,
    encoding: "utf8",
  });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
}

test("a fused-attention export of the shipped weights decodes as the plain graph does (1e-4), float16 KV included", async () => {
  const tmp = mkdtempSync(join(tmpdir(), "nfcot-fused-"));
  const fused = join(tmp, "fused");
  try {
    const r = runPython([
      "-c",
      "import sys; from nfcot.onnx_weights import load_model_dir; from nfcot.export import export_weights\n" +
        "m = load_model_dir(sys.argv[1])[0]; export_weights(sys.argv[1], m, sys.argv[2], attention='fused')",
      SHIPPED_MODEL,
      fused,
    ]);
    assert.equal(r.status, 0, r.output);
    const spec = loadManifest(fused).graphs.backbone as { attention?: string; fused_max_batch?: number };
    assert.equal(spec.attention, "fused");
    assert.equal(spec.fused_max_batch, 8); // 32 row-heads at 4 heads
    const V = manifest.architecture.vocab_size;
    for (const rows of [6, 10]) {
      const want = await decode(SHIPPED_MODEL, rows);
      const got = await decode(fused, rows);
      const e = { logits: relErr(got.logits, want.logits), mu: relErr(got.mu, want.mu) };
      console.log(
        `# fused vs plain, ${rows} rows: logits rel err ${e.logits.toExponential(2)}, mu ${e.mu.toExponential(2)}`,
      );
      assert.equal(got.logits.length, want.logits.length);
      assert.ok(e.logits < 1e-4, `${rows} rows: logits relative error ${e.logits}`);
      assert.ok(e.mu < 1e-4, `${rows} rows: mu relative error ${e.mu}`);
      assert.equal(confidentFlips(got.logits, want.logits, V), 0);
    }
    // float16 KV on both: the same float16 past read by either attention.
    const plain16 = join(tmp, "plain16");
    const fused16 = join(tmp, "fused16");
    cpSync(SHIPPED_MODEL, plain16, { recursive: true });
    cpSync(fused, fused16, { recursive: true });
    quantizeKv(plain16);
    quantizeKv(fused16);
    const want = await decode(plain16, 6);
    const got = await decode(fused16, 6);
    const e = relErr(got.logits, want.logits);
    console.log(`# fused vs plain, float16 KV, 6 rows: logits rel err ${e.toExponential(2)}`);
    assert.ok(e < 1e-3, `float16 KV: logits relative error ${e}`);
    assert.equal(confidentFlips(got.logits, want.logits, V), 0);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
