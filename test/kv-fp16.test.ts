import { test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { Runner } from "../src/engine/runner.ts";
import { loadManifest, ManifestError } from "../src/model/manifest.ts";
import { ModelTokenizer } from "../src/model/tokenizer.ts";
import { MODELS_DIR, SHIPPED_MODEL } from "./helpers/python.ts";
import { confidentFlips, relErr } from "./helpers/compare-logits.ts";
import { ORT_PYTHON } from "../bench/lib/ort-python.ts";
import { loadTestSplit } from "../bench/lib/test-split.ts";

/** A float16 KV cache (nfcot/kv_dtype.py graph surgery on the shipped model) against the float32
 * pool: a short prefill, then one decode step per position, so every later position reads its
 * past K/V back out of the float16 pool. Bounds: relative logit error 5e-3, no greedy change at a
 * confident position (the measured values are printed). */
const manifest = loadManifest(SHIPPED_MODEL);
const tokenizer = new ModelTokenizer(SHIPPED_MODEL, manifest);
const sequences = loadTestSplit()
  .slice(20, 26)
  .map((p) => [manifest.special_tokens.bos!, ...tokenizer.encode(`${p.source}\n${p.trace}`)].slice(0, 40));
const PREFILL = 6;

async function decodeAll(dir: string): Promise<{ logits: Float32Array; mu: Float32Array; runner: Runner }> {
  const m = loadManifest(dir);
  const runner = await Runner.create(m, {
    modelDir: dir,
    provider: "cpu",
    threads: 1,
    graphOptimization: "all",
    numBlocks: sequences.length * 3,
    blockSize: 16,
  });
  const tables = sequences.map((_, b) => [b * 3, b * 3 + 1, b * 3 + 2]);
  const logits: number[] = [];
  const mu: number[] = [];
  await runner.forward(
    sequences.map((s, b) => ({
      tokens: s.slice(0, PREFILL),
      thoughts: s.slice(0, PREFILL).map(() => null),
      start: 0,
      blockTable: tables[b]!,
      outputs: [],
    })),
  );
  const len = Math.min(...sequences.map((s) => s.length));
  for (let p = PREFILL; p < len; p++) {
    const out = await runner.forward(
      sequences.map((s, b) => ({ tokens: [s[p]!], thoughts: [null], start: p, blockTable: tables[b]!, outputs: [p] })),
    );
    logits.push(...out.logits);
    mu.push(...out.mu);
  }
  await runner.close();
  return { logits: new Float32Array(logits), mu: new Float32Array(mu), runner };
}

test("a float16 KV pool decodes within 5e-3 of the float32 pool, in half the memory", async () => {
  const dir = mkdtempSync(join(tmpdir(), "nfcot-kv16-"));
  try {
    cpSync(SHIPPED_MODEL, dir, { recursive: true });
    const r = spawnSync(ORT_PYTHON, ["-m", "nfcot.quantize", dir, "--kv-dtype", "float16"], {
      cwd: MODELS_DIR,
      encoding: "utf8",
    });
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
    const m = loadManifest(dir);
    assert.equal(m.kv_cache.dtype, "float16");
    assert.equal(Runner.bytesPerBlock(m, 16) * 2, Runner.bytesPerBlock(manifest, 16));
    const want = await decodeAll(SHIPPED_MODEL);
    const got = await decodeAll(dir);
    assert.ok(got.runner.pool instanceof Uint16Array && want.runner.pool instanceof Float32Array);
    // The pool really holds float16 bits of the K/V: nonzero where written, each value finite.
    const bits = got.runner.pool as Uint16Array;
    assert.ok(bits.some((x) => x !== 0));
    assert.ok(
      bits.every((x) => (x & 0x7c00) !== 0x7c00),
      "no inf / NaN in the float16 pool",
    );
    const V = manifest.architecture.vocab_size;
    const e = {
      logits: relErr(got.logits, want.logits),
      flips: confidentFlips(got.logits, want.logits, V),
      mu: relErr(got.mu, want.mu),
    };
    console.log(
      `# float16 KV: logits rel err ${e.logits.toExponential(2)}, mu rel err ${e.mu.toExponential(2)}, greedy changed at ${(e.flips * 100).toFixed(2)}% of confident positions (${want.logits.length / V} decode positions)`,
    );
    assert.ok(e.logits > 0 && e.logits <= 5e-3, `logits relative error ${e.logits}`);
    assert.ok(e.mu <= 5e-3, `mu relative error ${e.mu}`);
    assert.equal(e.flips, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a manifest whose kv_pool dtype disagrees with kv_cache.dtype is refused, naming both", () => {
  const dir = mkdtempSync(join(tmpdir(), "nfcot-kvbad-"));
  try {
    cpSync(SHIPPED_MODEL, dir, { recursive: true });
    const m = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"));
    m.kv_cache.dtype = "float16";
    writeFileSync(join(dir, "manifest.json"), JSON.stringify(m));
    assert.throws(
      () => loadManifest(dir),
      (e: Error) => e instanceof ManifestError && /kv_pool is float32 but kv_cache.dtype is float16/.test(e.message),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
