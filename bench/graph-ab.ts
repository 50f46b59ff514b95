/**
 * Two model directories of the same shape (an old and a new export of the graph, or two
 * precisions) side by side: decode steps of the bare runner, interleaved rounds, medians, and
 * each graph's node count after onnxruntime's optimizations (the fixed per-step cost of a small
 * model is mostly per-node overhead: bench/step-profile.ts).
 *
 *   npx tsx bench/graph-ab.ts --a DIR_A --b DIR_B [--batches 1,32] [--steps 64] [--rounds 5] [--threads 2] [--spinning]
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import ort from "onnxruntime-node";
import { Runner } from "../src/engine/runner.ts";
import { msPerDecodeStep } from "./lib/decode-step.ts";
import { loadManifest } from "../src/model/manifest.ts";
import { ORT_PYTHON } from "./lib/ort-python.ts";

const MODELS = fileURLToPath(new URL("../models", import.meta.url));

const { values } = parseArgs({
  options: {
    a: { type: "string" },
    b: { type: "string" },
    batches: { type: "string", default: "1,32" },
    steps: { type: "string", default: "64" },
    rounds: { type: "string", default: "5" },
    threads: { type: "string", default: "2" },
    spinning: { type: "boolean", default: false },
  },
});
if (!values.a || !values.b) throw new Error("--a DIR and --b DIR are required");
const dirs = [values.a, values.b];
const steps = Number(values.steps);
const batches = values.batches!.split(",").map(Number);
const maxB = Math.max(...batches);
const P = 32;
const perSeq = Math.ceil((P + steps + 2) / 16);

/** Nodes a decode step runs after onnxruntime's optimizations (it writes the optimized graph;
 * models/nfcot/fused_graph.py counts them): "625" for a plain graph, "255 fused / 625 plain" for
 * a fused export (the fused path runs at small batches, the plain one otherwise). */
async function optimizedNodes(dir: string): Promise<string> {
  const m = loadManifest(dir);
  const tmp = mkdtempSync(join(tmpdir(), "graph-ab-"));
  const out = join(tmp, "opt.onnx");
  try {
    const s = await ort.InferenceSession.create(join(dir, m.graphs.backbone.file), {
      graphOptimizationLevel: "all",
      optimizedModelFilePath: out,
      logSeverityLevel: 3,
    });
    await s.release();
    const r = spawnSync(ORT_PYTHON, ["-m", "nfcot.fused_graph", out], { cwd: MODELS, encoding: "utf8" });
    if (r.status !== 0) return `? (${r.stderr.trim().split("\n").pop()})`;
    const n = JSON.parse(r.stdout) as { fused?: number; plain: number };
    return n.fused === undefined ? `${n.plain}` : `${n.fused} fused / ${n.plain} plain`;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

const runners = await Promise.all(
  dirs.map((d) =>
    Runner.create(loadManifest(d), {
      modelDir: d,
      provider: "cpu",
      threads: Number(values.threads),
      graphOptimization: "all",
      numBlocks: maxB * perSeq + 8,
      blockSize: 16,
      threadSpinning: values.spinning,
    }),
  ),
);
const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
const nodes = await Promise.all(dirs.map(optimizedNodes));
console.log(
  `A ${dirs[0]} (${nodes[0]} nodes after optimization), B ${dirs[1]} (${nodes[1]} nodes); ${values.threads} threads${values.spinning ? " (spinning)" : ""}; load average ${loadavg()
    .map((x) => x.toFixed(2))
    .join(" ")}`,
);
// CPU ms per step (this process's user + system time, every onnxruntime thread included) beside
// the wall time: on a shared machine the wall time also counts the waits for a core.
console.log("| batch | A ms/step | B ms/step | A / B (> 1: B faster) | A CPU ms/step | B CPU ms/step | A / B CPU |");
console.log("|---|---|---|---|---|---|---|");
for (const B of batches) {
  const o = { batch: B, prompt: P, steps, blocksPerSeq: perSeq };
  for (const r of runners) await msPerDecodeStep(r, o);
  const t: number[][] = [[], []];
  const cpu: number[][] = [[], []];
  for (let k = 0; k < Number(values.rounds); k++)
    for (let i = 0; i < 2; i++) {
      const c0 = process.cpuUsage();
      t[i]!.push(await msPerDecodeStep(runners[i]!, o));
      const c = process.cpuUsage(c0);
      // msPerDecodeStep also runs one prefill of the prompt first: its CPU is counted in too.
      cpu[i]!.push((c.user + c.system) / 1000 / steps);
    }
  const [a, b] = t.map(median) as [number, number];
  const [ca, cb] = cpu.map(median) as [number, number];
  console.log(
    `| ${B} | ${a.toFixed(3)} | ${b.toFixed(3)} | ${(a / b).toFixed(2)} | ${ca.toFixed(3)} | ${cb.toFixed(3)} | ${(ca / cb).toFixed(2)} |`,
  );
}
for (const r of runners) await r.close();
