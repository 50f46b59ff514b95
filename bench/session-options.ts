/**
 * The fixed per-step cost against onnxruntime's session options: decode steps of the bare runner
 * with 1 or 2 intra-op threads, threads spinning between kernels or sleeping, side by side in
 * interleaved rounds (medians). A small model's step is hundreds of tiny kernels; with 2 threads
 * each parallel kernel hands work to the other thread, and a sleeping thread must be woken first.
 *
 *   npx tsx bench/session-options.ts [--model DIR] [--batches 1,32] [--prompt 32] [--steps 64] [--rounds 5]
 */
import { loadavg } from "node:os";
import { Runner } from "../src/engine/runner.ts";
import { msPerDecodeStep } from "./lib/decode-step.ts";
import { engineBenchArgs, kvBlocksFor } from "./lib/engine-args.ts";

const args = engineBenchArgs({ batches: "1,32", prompt: "32", steps: "64", rounds: "5" });
const { modelDir: dir, manifest: m, batches, maxBatch: maxB, prompt: P, steps } = args;
const { perSequence: perSeq, total: numBlocks } = kvBlocksFor(maxB, P + steps + 2, 16);
const configs = [
  { name: "1 thread", threads: 1, spinning: false },
  { name: "2 threads, no spinning (default)", threads: 2, spinning: false },
  { name: "2 threads, spinning", threads: 2, spinning: true },
];
const runners = await Promise.all(
  configs.map((c) =>
    Runner.create(m, {
      modelDir: dir,
      provider: "cpu",
      threads: c.threads,
      threadSpinning: c.spinning,
      graphOptimization: "all",
      numBlocks,
      blockSize: 16,
    }),
  ),
);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(
  `model ${m.name} (${dir}); decode steps at context ${P}..${P + steps}; ${args.rounds} interleaved rounds; load average ${loadavg()
    .map((x) => x.toFixed(2))
    .join(" ")}`,
);
console.log(`| batch | ${configs.map((c) => `${c.name} ms/step`).join(" | ")} |`);
console.log(`|---|${configs.map(() => "---").join("|")}|`);
for (const B of batches) {
  for (const r of runners) await msPerDecodeStep(r, { batch: B, prompt: P, steps, blocksPerSeq: perSeq }); // warm-up
  const times = configs.map(() => [] as number[]);
  for (let k = 0; k < args.rounds; k++)
    for (let i = 0; i < runners.length; i++)
      times[i]!.push(await msPerDecodeStep(runners[i]!, { batch: B, prompt: P, steps, blocksPerSeq: perSeq }));
  const med = times.map(median);
  console.log(`| ${B} | ${med.map((x) => `${x.toFixed(3)} (${(med[1]! / x).toFixed(2)}x)`).join(" | ")} |`);
}
for (const r of runners) await r.close();
