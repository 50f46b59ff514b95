import { test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import ort from "onnxruntime-node";
import { Runner } from "../src/engine/runner.ts";
import { loadManifest } from "../src/model/manifest.ts";
import { THOUGHT } from "../src/model/positions.ts";
import { ModelTokenizer } from "../src/model/tokenizer.ts";
import { MODELS_DIR, SHIPPED_MODEL, runPython } from "./helpers/python.ts";
import { confidentFlips, relErr } from "./helpers/compare-logits.ts";
import { ORT_PYTHON } from "../bench/lib/ort-python.ts";
import { loadTestSplit } from "../bench/lib/test-split.ts";

/** The shipped model's own weights re-exported with `--attention fused` (models/nfcot/fused.py:
 * decode steps of up to 64 rows through onnxruntime's fused ops) against the shipped
 * plain graph, through the real runner: a prefill, then decode steps whose odd rows are thought
 * steps, with 6 and 64 rows (the fused path) and with 65 (the plain branch of the same graph). */
const manifest = loadManifest(SHIPPED_MODEL);
const tokenizer = new ModelTokenizer(SHIPPED_MODEL, manifest);
const sequences = loadTestSplit()
  .slice(40, 105)
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
    assert.equal(spec.fused_max_batch, 64); // FUSED_MAX_BATCH in models/nfcot/fused.py
    const V = manifest.architecture.vocab_size;
    for (const rows of [6, 64, 65]) {
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

test("a text-only model (Qwen3-style q/k norms, q/k/v and o biases) exports fused, weights inline or external, as it runs plain (1e-4)", async () => {
  const tmp = mkdtempSync(join(tmpdir(), "nfcot-fused-text-"));
  try {
    const r = runPython([
      "-c",
      "import sys, torch\nfrom nfcot.model import ModelConfig, NFCoTModel\nfrom nfcot.export import export_graphs, PRESETS\n" +
        "torch.manual_seed(3)\n" +
        "c = ModelConfig(vocab_size=300, latent=False, qk_norm=True, qkv_bias=True, o_bias=True, **PRESETS['tiny'])\n" +
        "m = NFCoTModel(c).eval()\n" +
        "for d, a, ext in (('plain', 'plain', None), ('fused', 'fused', None), ('fused-ext', 'fused', True)):\n" +
        "    export_graphs(f'{sys.argv[1]}/{d}', m, None, None, attention=a, external=ext)",
      tmp,
    ]);
    assert.equal(r.status, 0, r.output);
    // The external form (a model past 2 GB) keeps both branches' weights in one data file.
    const size = (d: string, f: string) => statSync(join(tmp, d, f)).size;
    assert.ok(size("fused-ext", "backbone.onnx.data") > size("fused", "backbone.onnx") * 0.9);
    assert.ok(size("fused-ext", "backbone.onnx") < size("fused", "backbone.onnx") / 10);
    const [plain, ...fused] = await Promise.all(
      ["plain", "fused", "fused-ext"].map((a) => ort.InferenceSession.create(join(tmp, a, "backbone.onnx"))),
    );
    // tiny preset: 2 layers, 2 kv heads of 16; blocks of 4; a deterministic junk-filled pool.
    const [L, kvH, hd, BS, NB] = [2, 2, 16, 4, 40];
    const pool = Float32Array.from({ length: NB * L * 2 * kvH * BS * hd }, (_, i) => 3 * Math.sin(i * 12.9898));
    // 4 single-position rows (the fused path) and a mixed chunk of 3 rows (the plain branch).
    for (const [S, past] of [
      [1, [7, 0, 13, 4]],
      [4, [7, 0, 13]],
    ] as [number, number[]][]) {
      const B = past.length;
      const MB = Math.max(1, ...past.map((p) => Math.ceil(p / BS)));
      const i64 = (xs: number[], dims: number[]) => new ort.Tensor("int64", BigInt64Array.from(xs.map(BigInt)), dims);
      const feeds = {
        input_ids: i64(
          Array.from({ length: B * S }, (_, i) => (i * 37) % 300),
          [B, S],
        ),
        positions: i64(
          Array.from({ length: B * S }, (_, i) => past[Math.floor(i / S)]! + (i % S)),
          [B, S],
        ),
        past_lens: i64(past, [B]),
        kv_pool: new ort.Tensor("float32", pool, [NB, L, 2, kvH, BS, hd]),
        block_tables: i64(
          Array.from({ length: B * MB }, (_, i) => (i * 7 + 3) % NB),
          [B, MB],
        ),
        gather_index: i64(
          Array.from({ length: B * S }, (_, i) => i),
          [B * S],
        ),
      };
      const [want, ...got] = await Promise.all([plain!.run(feeds), ...fused.map((f) => f.run(feeds))]);
      for (const [i, out] of got.entries()) {
        for (const name of ["logits", "new_kv"]) {
          const e = relErr(out[name]!.data as Float32Array, want[name]!.data as Float32Array);
          assert.ok(e < 1e-4, `export ${i}, S=${S} ${name}: relative error ${e}`);
        }
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
