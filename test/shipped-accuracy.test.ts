import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { EngineClient } from "../src/engine/client.ts";
import type { ReasoningMode } from "../src/model/manifest.ts";
import { parseAnswer } from "../bench/lib/answer.ts";
import { loadTestSplit, takePrograms } from "../bench/lib/test-split.ts";
import { collect, request, startEngine } from "./helpers/engine.ts";
import { SHIPPED_MODEL } from "./helpers/python.ts";

/** Regression test for what users get: the first 100 test-split programs through the real engine
 * (worker thread, scheduler, paged KV cache, onnxruntime-node, the chat template, the sampler at
 * temperature 0, latent thoughts at T_z = 0) on the shipped model, in each mode, scored as the
 * benchmarks score (bench/lib/answer.ts). Each mode must reach the accuracy the manifest records for
 * the whole 1,000-program split minus a margin: three binomial standard deviations of a 100-program
 * mean, sqrt(p (1 - p) / 100) each (none 0.575: 0.148, explicit 0.996: 0.019, latent 0.953: 0.064),
 * and at least 0.02. A change to the engine, sampler, template or graphs that breaks answers falls
 * far below that (a broken mode answers ~0.09, the majority-answer baseline). */

const N = 100;
const MODES: ReasoningMode[] = ["none", "explicit", "latent"];

interface Evaluation {
  split: string;
  programs: number;
  accuracy: Record<ReasoningMode, number>;
}
const evaluation = (
  JSON.parse(readFileSync(join(SHIPPED_MODEL, "manifest.json"), "utf8")) as { evaluation?: Evaluation }
).evaluation;

export function margin(p: number, n = N): number {
  return Math.max(0.02, 3 * Math.sqrt((p * (1 - p)) / n));
}

let engine: EngineClient;
before(async () => {
  engine = await startEngine({ enablePrefixCaching: false });
});
after(async () => engine.close());

test("the manifest records the shipped model's test-split accuracy per mode", () => {
  assert.ok(evaluation, "models/nfcot-trace-small/manifest.json has no evaluation block");
  assert.equal(evaluation.split, "test");
  assert.equal(evaluation.programs, 1000);
  for (const m of MODES) {
    // A count of the 1,000 programs, above the majority-answer baseline (0.086 of the split).
    const a = evaluation.accuracy[m];
    assert.ok(Math.abs(a * 1000 - Math.round(a * 1000)) < 1e-9, `${m}: ${a} is not a count out of 1,000`);
    assert.ok(a > 0.086, `${m}: ${a}`);
  }
});

for (const mode of MODES) {
  test(`${N} test-split programs in mode ${mode} through the engine reach the recorded accuracy minus the margin`, {
    timeout: 600_000,
  }, async () => {
    const programs = takePrograms(loadTestSplit(), N);
    const outs = await Promise.all(
      programs.map((p) =>
        collect(
          engine.generate(
            request(p.source, mode, { latent: { temperature: 0, returnVectors: false } }, { maxTokens: 96 }),
          ),
        ),
      ),
    );
    outs.forEach((o, i) => {
      assert.equal(o.error, null, `program ${i}: ${o.error}`);
      assert.equal(o.finish?.reason, "stop", `program ${i} did not end with </s>: ${JSON.stringify(o.text)}`);
    });
    const right = outs.filter((o, i) => parseAnswer(o.text) === programs[i]!.answer).length;
    const acc = right / N;
    const want = evaluation!.accuracy[mode];
    const floor = want - margin(want);
    console.log(
      `# ${mode}: ${right}/${N} right (recorded ${want} on ${evaluation!.programs}; floor ${floor.toFixed(3)})`,
    );
    assert.ok(acc >= floor, `${mode}: ${acc} < ${want} - ${margin(want).toFixed(3)}`);
    if (mode === "latent")
      assert.ok(
        outs.every((o) => o.thoughtLogProbs.length === 6),
        "every latent reply holds 6 thoughts",
      );
  });
}
