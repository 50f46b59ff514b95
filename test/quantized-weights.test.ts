import { test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { Runner } from "../src/engine/runner.ts";
import { loadManifest } from "../src/model/manifest.ts";
import { ModelTokenizer } from "../src/model/tokenizer.ts";
import { MODELS_DIR, SHIPPED_MODEL } from "./helpers/python.ts";
import { confidentFlips as flips, relErr } from "./helpers/compare-logits.ts";
import { ORT_PYTHON } from "../bench/lib/ort-python.ts";
import { loadTestSplit } from "../bench/lib/test-split.ts";

/** The shipped model at each weight precision (nfcot/quantize.py, onnxruntime's quantizers, run in
 * the venv scripts/test-deps.sh makes) against its float32 graph, teacher-forced on explicit
 * traces of test-split programs: every position's logits and NF head outputs. Bounds (measured
 * values in README's "Weight precision"): relative error max|d| / max|ref| of the logits and of mu,
 * and the share of confident positions whose greedy token changes. */
const BOUNDS = {
  fp16: { logits: 5e-3, flips: 0.0, mu: 5e-3 },
  int8: { logits: 0.06, flips: 0.005, mu: 0.09 },
  int4: { logits: 0.5, flips: 0.03, mu: 0.8 },
} as const;

const manifest = loadManifest(SHIPPED_MODEL);
const tokenizer = new ModelTokenizer(SHIPPED_MODEL, manifest);
const programs = loadTestSplit().slice(0, 12);
const sequences = programs.map((p) => [manifest.special_tokens.bos!, ...tokenizer.encode(`${p.source}\n${p.trace}`)]);

interface Outputs {
  logits: Float32Array;
  mu: Float32Array;
}

async function forwardAll(dir: string): Promise<Outputs> {
  const m = loadManifest(dir);
  const maxLen = Math.max(...sequences.map((s) => s.length));
  const perSeq = Math.ceil(maxLen / 16);
  const runner = await Runner.create(m, {
    modelDir: dir,
    provider: "cpu",
    threads: 1,
    graphOptimization: "all",
    numBlocks: sequences.length * perSeq,
    blockSize: 16,
  });
  const out = await runner.forward(
    sequences.map((s, b) => ({
      tokens: s,
      thoughts: s.map(() => null),
      start: 0,
      blockTable: Array.from({ length: perSeq }, (_, j) => b * perSeq + j),
      outputs: s.map((_, i) => i),
    })),
  );
  await runner.close();
  return { logits: out.logits, mu: out.mu };
}

const ref = forwardAll(SHIPPED_MODEL);

for (const weights of ["fp16", "int8", "int4"] as const) {
  test(`shipped model at ${weights} weights stays within its bounds of the float32 graph`, async () => {
    const dir = mkdtempSync(join(tmpdir(), `nfcot-${weights}-`));
    try {
      cpSync(SHIPPED_MODEL, dir, { recursive: true });
      const r = spawnSync(ORT_PYTHON, ["-m", "nfcot.quantize", dir, "--weights", weights], {
        cwd: MODELS_DIR,
        encoding: "utf8",
      });
      assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
      const m = loadManifest(dir);
      assert.equal(m.weights?.dtype, { fp16: "float16", int8: "int8", int4: "int4" }[weights]);
      const graph = readFileSync(join(dir, "backbone.onnx"));
      // The quantized graph really carries MatMulNBits (op names are plain strings in the protobuf).
      assert.equal(graph.includes("MatMulNBits"), weights !== "fp16");
      const want = await ref;
      const got = await forwardAll(dir);
      const V = manifest.architecture.vocab_size;
      const e = {
        logits: relErr(got.logits, want.logits),
        flips: flips(got.logits, want.logits, V),
        mu: relErr(got.mu, want.mu),
      };
      const b = BOUNDS[weights];
      console.log(
        `# ${weights}: logits rel err ${e.logits.toExponential(2)}, greedy token changed at ${(e.flips * 100).toFixed(2)}% of confident positions, mu rel err ${e.mu.toExponential(2)}`,
      );
      assert.ok(e.logits > 0, "the quantized graph computes something different at all");
      assert.ok(e.logits <= b.logits, `logits relative error ${e.logits} > ${b.logits}`);
      assert.ok(
        e.flips <= b.flips,
        `greedy token changed at ${(e.flips * 100).toFixed(2)}% of positions > ${b.flips * 100}%`,
      );
      assert.ok(e.mu <= b.mu, `mu relative error ${e.mu} > ${b.mu}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test("the quantizer refuses an unknown --keep group with a clear error", () => {
  const r = spawnSync(ORT_PYTHON, ["-m", "nfcot.quantize", SHIPPED_MODEL, "--weights", "int8", "--keep", "lm_hed"], {
    cwd: MODELS_DIR,
    encoding: "utf8",
  });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /unknown group\(s\) lm_hed; known: lm_head/);
});
