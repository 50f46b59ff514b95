/**
 * Engine overhead benchmark: the runner's raw forward loop vs the full engine (worker thread,
 * scheduler, block manager, samplers) on the same model, prompts and lengths, side by side in one run.
 *
 *   npx tsx bench/engine-bench.ts [--model DIR] [--batches 1,8,32] [--prompt 32] [--steps 64] [--spinning]
 *
 * Prints tokens/s for both and their ratio per batch size, the engine's 32-vs-1 scaling, and the
 * p99 event-loop delay of this (HTTP-side) thread while the engine is saturated.
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import { EngineClient } from "../src/engine/client.ts";
import { DEFAULT_ENGINE_OPTIONS } from "../src/engine/options.ts";
import { Runner, type ForwardRow } from "../src/engine/runner.ts";
import { greedyTextRequest } from "./lib/decode-step.ts";
import { engineBenchArgs, kvBlocksFor } from "./lib/engine-args.ts";

const args = engineBenchArgs({ batches: "1,8,32", prompt: "32", steps: "64", threads: "2" }, { spinning: true });
const { modelDir, manifest, vocabSize: V, batches, maxBatch: maxB, prompt: P, steps, threads, threadSpinning } = args;
const blockSize = 16;
const { perSequence: blocksPerSeq, total: numBlocks } = kvBlocksFor(maxB, P + steps + 1, blockSize);

// Plain text tokens (no specials), the same for both sides.
const prompts = Array.from({ length: maxB }, (_, b) =>
  Array.from({ length: P }, (_, i) => 20 + ((b * 7 + i * 13) % (V - 20))),
);

function argmax(x: Float32Array, off: number): number {
  let best = 0;
  for (let v = 1; v < V; v++) if (x[off + v]! > x[off + best]!) best = v;
  return best;
}

async function raw(runner: Runner, B: number): Promise<number> {
  const tables = Array.from({ length: B }, (_, b) =>
    Array.from({ length: blocksPerSeq }, (_, j) => b * blocksPerSeq + j),
  );
  const t0 = performance.now();
  let out = await runner.forward(
    prompts
      .slice(0, B)
      .map((p, b) => ({ tokens: p, thoughts: p.map(() => null), start: 0, blockTable: tables[b]!, outputs: [P - 1] })),
  );
  let next = Array.from({ length: B }, (_, b) => argmax(out.logits, b * V));
  for (let s = 0; s < steps - 1; s++) {
    const rows: ForwardRow[] = next.map((t, b) => ({
      tokens: [t],
      thoughts: [null],
      start: P + s,
      blockTable: tables[b]!,
      outputs: [P + s],
    }));
    out = await runner.forward(rows);
    next = next.map((_, b) => argmax(out.logits, b * V));
  }
  return (B * steps) / ((performance.now() - t0) / 1000);
}

async function engineRun(engine: EngineClient, B: number, tag: string): Promise<{ tps: number; p99ms: number }> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  const t0 = performance.now();
  await Promise.all(
    prompts.slice(0, B).map(async (p, b) => {
      let n = 0;
      const it = engine.generate(greedyTextRequest(`${tag}-${b}`, p, steps));
      for await (const e of it) if (e.type === "token") n++;
      if (n !== steps) throw new Error(`request ${b} produced ${n} tokens`);
    }),
  );
  const dt = (performance.now() - t0) / 1000;
  h.disable();
  return { tps: (B * steps) / dt, p99ms: h.percentile(99) / 1e6 };
}

const runner = await Runner.create(manifest, {
  modelDir,
  provider: "cpu",
  threads,
  graphOptimization: "all",
  numBlocks,
  blockSize,
  threadSpinning,
});
const engine = await EngineClient.start({
  ...DEFAULT_ENGINE_OPTIONS,
  modelDir,
  threads,
  kvCacheBlocks: numBlocks,
  blockSize,
  threadSpinning,
  enablePrefixCaching: false,
  maxNumSeqs: maxB,
  maxNumBatchedTokens: Math.max(2048, maxB * P),
});
console.log(
  `model ${manifest.name} (${modelDir}); prompt ${P}, ${steps} generated tokens per sequence, ${threads} threads${threadSpinning ? " (spinning)" : ""}`,
);
await raw(runner, 1);
await engineRun(engine, 1, "warm");
const rows: { B: number; raw: number; eng: number; p99: number }[] = [];
for (const B of batches) {
  // Interleave the two so drift on a shared machine hits both alike.
  const r1 = await raw(runner, B);
  const e1 = await engineRun(engine, B, `a${B}`);
  const r2 = await raw(runner, B);
  const e2 = await engineRun(engine, B, `b${B}`);
  rows.push({ B, raw: (r1 + r2) / 2, eng: (e1.tps + e2.tps) / 2, p99: Math.max(e1.p99ms, e2.p99ms) });
}
console.log("| batch | raw runner tok/s | engine tok/s | engine / raw | HTTP-thread p99 event-loop delay |");
console.log("|---|---|---|---|---|");
for (const r of rows)
  console.log(
    `| ${r.B} | ${r.raw.toFixed(0)} | ${r.eng.toFixed(0)} | ${(r.eng / r.raw).toFixed(3)} | ${r.p99.toFixed(1)} ms |`,
  );
const one = rows.find((r) => r.B === 1);
const top = rows.find((r) => r.B === maxB);
if (one && top && maxB > 1) console.log(`engine tok/s at batch ${maxB} / batch 1: ${(top.eng / one.eng).toFixed(2)}x`);
await engine.close();
await runner.close();
