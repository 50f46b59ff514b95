/**
 * Where a decode step's time goes, per batch size: onnxruntime's own profiler (per-op kernel
 * times, grouped by what they compute), onnxruntime's per-call overhead, the runner's JS work
 * (feeds, K/V write-back), the engine's JS work (schedule, sampling over the vocabulary,
 * detokenizing, events) and passing a step's events to the HTTP thread.
 *
 *   npx tsx bench/step-profile.ts [--model DIR] [--batches 1,32] [--prompt 32] [--steps 32] [--threads 2] [--spinning]
 *
 * Two passes per batch size on the same prompts: an unprofiled one through the engine (the real
 * step times), and a profiled one through the bare runner (profiling slows every kernel a little:
 * its per-op shares are applied to the unprofiled onnxruntime time, and both are printed).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MessageChannel } from "node:worker_threads";
import { BlockManager } from "../src/engine/block-manager.ts";
import { Engine } from "../src/engine/engine.ts";
import { Rng } from "../src/engine/rng.ts";
import { Runner, type ForwardRow, type RunnerTiming } from "../src/engine/runner.ts";
import { sampleToken } from "../src/engine/sampler.ts";
import { greedySampling } from "../src/engine/sampling-params.ts";
import { Scheduler } from "../src/engine/scheduler.ts";
import type { EngineEvent } from "../src/engine/types.ts";
import { eosTokenIds } from "../src/model/manifest.ts";
import { ModelTokenizer } from "../src/model/tokenizer.ts";
import { greedyTextRequest } from "./lib/decode-step.ts";
import { engineBenchArgs, kvBlocksFor } from "./lib/engine-args.ts";
import { categorize, readProfile, type OpTimes } from "./lib/ort-profile.ts";

const args = engineBenchArgs({ batches: "1,32", prompt: "32", steps: "32", threads: "2" }, { spinning: true });
const { modelDir, manifest, vocabSize: V, batches, maxBatch, prompt: P, steps, threads, threadSpinning } = args;
const blockSize = 16;
// Untimed engine steps first: V8 compiles the engine's JS on its first few hundred steps, and a
// few warm-up steps left the JS share about 7x too large (0.4 ms against 0.06 ms per step for the
// shipped model at batch 1 over 11,400 steps).
const WARM = 64;
const { perSequence: blocksPerSeq, total: numBlocks } = kvBlocksFor(maxBatch, P + WARM + steps + 2, blockSize);
const base = {
  modelDir,
  provider: "cpu" as const,
  threads,
  graphOptimization: "all" as const,
  numBlocks,
  blockSize,
  threadSpinning,
};
const prompts = (B: number) =>
  Array.from({ length: B }, (_, b) => Array.from({ length: P }, (_, i) => 20 + ((b * 7 + i * 13) % (V - 20))));

function delta(a: RunnerTiming, b: RunnerTiming): RunnerTiming {
  return Object.fromEntries(
    Object.keys(a).map((k) => [k, b[k as keyof RunnerTiming] - a[k as keyof RunnerTiming]]),
  ) as unknown as RunnerTiming;
}

/** Unprofiled: the engine as the worker builds it, timed around each decode step. */
async function enginePass(B: number) {
  const runner = await Runner.create(manifest, base);
  const tokenizer = new ModelTokenizer(modelDir, manifest);
  const blocks = new BlockManager({ numBlocks, blockSize, enablePrefixCaching: false });
  const scheduler = new Scheduler({ maxNumSeqs: B, maxNumBatchedTokens: Math.max(2048, B * P) }, blocks);
  let events: EngineEvent[] = [];
  const special = {
    ...manifest.special_tokens,
    eosIds: eosTokenIds(manifest),
    neverSample: tokenizer.idsWithoutToken(V),
  };
  const engine = new Engine(runner, scheduler, blocks, tokenizer, special, manifest.max_context, (e) => events.push(e));
  prompts(B).forEach((p, b) => engine.add(greedyTextRequest(`r${b}`, p, WARM + steps + 4)));
  await engine.step(); // prefill (all prompts fit one step's budget)
  for (let i = 0; i < WARM; i++) await engine.step(); // warm-up decode steps
  const t0 = { ...runner.timing };
  let stepMs = 0;
  let payload: unknown = null;
  for (let s = 0; s < steps; s++) {
    events = [];
    const a = performance.now();
    await engine.step();
    stepMs += performance.now() - a;
    payload = { type: "events", events, stats: engine.stats(), steps: engine.drainStepRecords() };
  }
  const d = delta(t0, runner.timing);
  await runner.close();
  return { stepMs: stepMs / steps, t: d, runs: d.runs, payload };
}

/** A step's events message through a MessageChannel (structured clone + one hop), as the worker sends it. */
async function messageMs(payload: unknown, n = 200): Promise<number> {
  const { port1, port2 } = new MessageChannel();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const got = new Promise((r) => port2.once("message", r));
    port1.postMessage(payload);
    await got;
  }
  const ms = (performance.now() - t0) / n;
  port1.close();
  return ms;
}

/** Sampling one row over the vocabulary, greedy and with the usual chat settings. */
function samplingMs(): { greedy: number; topP: number } {
  const logits = new Float32Array(V).map((_, i) => Math.sin(i * 12.9898) * 4);
  const history = { counts: new Map<number, number>(), seen: new Set<number>() };
  const rng = new Rng(1);
  const time = (p: ReturnType<typeof greedySampling>) => {
    const n = Math.max(50, Math.floor(2e6 / V));
    const t0 = performance.now();
    for (let i = 0; i < n; i++) sampleToken(logits, p, history, rng, [0]);
    return (performance.now() - t0) / n;
  };
  time(greedySampling());
  return { greedy: time(greedySampling()), topP: time(greedySampling({ temperature: 0.8, topP: 0.95 })) };
}

/** Profiled: the bare runner, prefill then decode steps; returns per-step kernel times of the decode runs. */
async function profiledPass(B: number): Promise<{ ops: OpTimes; runMsProfiled: number }> {
  const dir = mkdtempSync(join(tmpdir(), "step-profile-"));
  const runner = await Runner.create(manifest, { ...base, profileFilePrefix: join(dir, "ort") });
  const tables = Array.from({ length: B }, (_, b) =>
    Array.from({ length: blocksPerSeq }, (_, j) => b * blocksPerSeq + j),
  );
  const ps = prompts(B);
  await runner.forward(
    ps.map((p, b) => ({ tokens: p, thoughts: p.map(() => null), start: 0, blockTable: tables[b]!, outputs: [P - 1] })),
  );
  // The same contexts as the engine pass.
  for (let s = 0; s < steps + WARM; s++) {
    const rows: ForwardRow[] = ps.map((p, b) => ({
      tokens: [p[s % P]!],
      thoughts: [null],
      start: P + s,
      blockTable: tables[b]!,
      outputs: [P + s],
    }));
    await runner.forward(rows);
  }
  runner.endProfiling();
  await runner.close();
  const file = readdirSync(dir).find((f) => f.endsWith(".json"))!;
  const prof = readProfile(JSON.parse(readFileSync(join(dir, file), "utf8")), steps);
  rmSync(dir, { recursive: true, force: true });
  return { ops: prof, runMsProfiled: prof.runMs };
}

const pct = (x: number, total: number) => `${((100 * x) / total).toFixed(1)}%`;
console.log(
  `model ${manifest.name} (${modelDir}), prompt ${P}, decode steps ${steps} (context ${P + WARM}..${P + WARM + steps}, after ${WARM} untimed), ${threads} threads${threadSpinning ? " (spinning)" : ""}`,
);
const samp = samplingMs();
for (const B of batches) {
  const e = await enginePass(B);
  const prof = await profiledPass(B);
  const msg = await messageMs(e.payload);
  const perStep = (x: number) => x / steps;
  const runMs = perStep(e.t.runMs);
  const ortShare = categorize(prof.ops);
  const kernelsProfiled = ortShare.reduce((s, c) => s + c.ms, 0);
  // Profiled kernel shares applied to the unprofiled session.run time; the rest of session.run is
  // onnxruntime's per-call overhead (the profiled ratio of kernels to model_run).
  const kernelFrac = kernelsProfiled / prof.ops.runMs;
  const total = e.stepMs + msg;
  console.log(
    `\n## batch ${B}: ${total.toFixed(3)} ms per decode step (${((B * 1000) / total).toFixed(0)} tok/s incl. the events message)`,
  );
  console.log("| part | ms per step | share |");
  console.log("|---|---|---|");
  for (const c of ortShare)
    console.log(
      `| ORT kernels: ${c.name} (${c.nodes} nodes) | ${((runMs * kernelFrac * c.ms) / kernelsProfiled).toFixed(3)} | ${pct((runMs * kernelFrac * c.ms) / kernelsProfiled, total)} |`,
    );
  console.log(
    `| ORT per-call overhead (session.run minus kernels: executor, allocations, output copies, setImmediate hop) | ${(runMs * (1 - kernelFrac)).toFixed(3)} | ${pct(runMs * (1 - kernelFrac), total)} |`,
  );
  console.log(`| runner JS: building feeds | ${perStep(e.t.feedMs).toFixed(3)} | ${pct(perStep(e.t.feedMs), total)} |`);
  console.log(
    `| runner JS: new K/V into the pool | ${perStep(e.t.writeKvMs).toFixed(3)} | ${pct(perStep(e.t.writeKvMs), total)} |`,
  );
  const engineJs = e.stepMs - perStep(e.t.forwardMs);
  console.log(
    `| engine JS: schedule, sampling ${B} x ${V} logits, detokenize, events | ${engineJs.toFixed(3)} | ${pct(engineJs, total)} |`,
  );
  console.log(
    `| events message to the HTTP thread (structured clone + hop) | ${msg.toFixed(3)} | ${pct(msg, total)} |`,
  );
  console.log(
    `(profiled session.run ${prof.ops.runMs.toFixed(3)} ms, of it kernels ${kernelsProfiled.toFixed(3)} ms in ${prof.ops.kernels} kernel calls; unprofiled session.run ${runMs.toFixed(3)} ms)`,
  );
  console.log(
    `top ops (profiled ms per step): ${prof.ops.byOpType
      .slice(0, 8)
      .map(([op, ms]) => `${op} ${ms.toFixed(3)}`)
      .join(", ")}`,
  );
}
console.log(
  `\nsampling one row over ${V} logits: greedy ${(samp.greedy * 1000).toFixed(1)} us, temperature 0.8 + top_p 0.95 ${(samp.topP * 1000).toFixed(1)} us`,
);
