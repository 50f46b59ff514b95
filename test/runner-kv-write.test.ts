import { test } from "node:test";
import assert from "node:assert/strict";
import { Runner, type ForwardRow } from "../src/engine/runner.ts";
import { loadManifest } from "../src/model/manifest.ts";
import { ModelTokenizer } from "../src/model/tokenizer.ts";
import { relErr } from "./helpers/compare-logits.ts";
import { SHIPPED_MODEL } from "./helpers/python.ts";

/** The runner copies each step's new K/V into the pool one run of positions per block (a prefill
 * chunk is a few copies, not one per position). Checked against one position per step on the
 * same block tables: chunks that start mid-block and cross blocks, two rows of different lengths
 * in one step (the shorter one padded), block tables out of order. */
const manifest = loadManifest(SHIPPED_MODEL);
const tokenizer = new ModelTokenizer(SHIPPED_MODEL, manifest);
const BS = 16;
const NUM_BLOCKS = 8;
const text = "x = 3\ny = x + 4\nprint(y * 2)\nz = y - 1\nif z > 2:\n    print(z)\nelse:\n    print(x)\n";
// Row 0: [0, 5) then [5, 40) (mid-block start, three blocks); row 1: [0, 14) then [14, 17) (across a block edge).
const cuts = [5, 14];
const ends = [40, 17];
const ids = [manifest.special_tokens.bos!, ...tokenizer.encode(text)];
const seqs = ends.map((n, b) => ids.slice(b, b + n));
const tables = [
  [5, 1, 6],
  [3, 0],
];

const row = (b: number, from: number, to: number): ForwardRow => ({
  tokens: seqs[b]!.slice(from, to),
  thoughts: seqs[b]!.slice(from, to).map(() => null),
  start: from,
  blockTable: tables[b]!,
  outputs: [to - 1],
});

async function pool(write: (r: Runner) => Promise<void>): Promise<Float32Array> {
  const r = await Runner.create(manifest, {
    modelDir: SHIPPED_MODEL,
    provider: "cpu",
    threads: 1,
    graphOptimization: "all",
    numBlocks: NUM_BLOCKS,
    blockSize: BS,
  });
  await write(r);
  const p = Float32Array.from(r.pool as Float32Array);
  await r.close();
  return p;
}

test("a prefill chunk writes the pool as one position per step does, across blocks and rows", async () => {
  assert.deepEqual(
    seqs.map((s) => s.length),
    ends,
  );
  const chunked = await pool(async (r) => {
    await r.forward([row(0, 0, cuts[0]!), row(1, 0, cuts[1]!)]);
    await r.forward([row(0, cuts[0]!, ends[0]!), row(1, cuts[1]!, ends[1]!)]);
  });
  const stepped = await pool(async (r) => {
    for (let p = 0; p < ends[0]!; p++) {
      await r.forward([0, 1].filter((b) => p < ends[b]!).map((b) => row(b, p, p + 1)));
    }
  });
  const { num_layers: L, num_kv_heads: kvH, head_dim: hd } = manifest.architecture;
  const perBlock = L * 2 * kvH * BS * hd;
  const perSlot = (block: number, slot: number): Float32Array[] => {
    const out: Float32Array[] = [];
    for (let lk = 0; lk < 2 * L; lk++)
      for (let h = 0; h < kvH; h++) {
        const at = block * perBlock + ((lk * kvH + h) * BS + slot) * hd;
        out.push(chunked.subarray(at, at + hd), stepped.subarray(at, at + hd));
      }
    return out;
  };
  // Every written slot holds the same K/V both ways (float rounding of differently shaped
  // products apart); every other slot of the pool is untouched.
  const written = new Set<string>();
  for (const b of [0, 1]) for (let p = 0; p < ends[b]!; p++) written.add(`${tables[b]![Math.floor(p / BS)]}/${p % BS}`);
  assert.equal(written.size, 40 + 17);
  let worst = 0;
  for (let block = 0; block < NUM_BLOCKS; block++)
    for (let slot = 0; slot < BS; slot++) {
      const vs = perSlot(block, slot);
      if (written.has(`${block}/${slot}`)) {
        for (let i = 0; i < vs.length; i += 2) {
          assert.ok(
            vs[i + 1]!.some((x) => x !== 0),
            `block ${block} slot ${slot} written`,
          );
          worst = Math.max(worst, relErr(vs[i]!, vs[i + 1]!));
        }
      } else {
        assert.ok(
          vs.every((v) => v.every((x) => x === 0)),
          `block ${block} slot ${slot} untouched`,
        );
      }
    }
  console.log(`# chunked vs stepped K/V: worst relative error ${worst.toExponential(2)}`);
  assert.ok(worst < 1e-4, `relative error ${worst}`);
});
