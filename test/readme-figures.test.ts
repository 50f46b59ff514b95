import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** The READMEs quote the shipped model's test-split accuracy; the manifest's `evaluation` block
 * (written from `python -m nfcot.evaluate --model-dir nfcot-trace-small`) is the one source. */

const read = (p: string) => readFileSync(fileURLToPath(new URL(`../${p}`, import.meta.url)), "utf8");
const evaluation = JSON.parse(read("models/nfcot-trace-small/manifest.json")).evaluation as {
  programs: number;
  accuracy: Record<"none" | "explicit" | "latent", number>;
  command: string;
};
const pct = (x: number) => (100 * x).toFixed(1);

test("README.md's accuracy sentence quotes the manifest's figures", () => {
  const text = read("README.md").replace(/\s+/g, " ");
  const m =
    /it answers ([\d.]+)% of the test split right in `explicit` mode, ([\d.]+)% in `latent` and ([\d.]+)% in `none`/.exec(
      text,
    );
  assert.ok(m, "README.md no longer states the accuracy per mode in the form this test reads");
  assert.deepEqual(
    [m[1], m[2], m[3]],
    [pct(evaluation.accuracy.explicit), pct(evaluation.accuracy.latent), pct(evaluation.accuracy.none)],
  );
});

test("models/README.md quotes the manifest's figures on the current split and the command that made them", () => {
  const text = read("models/README.md").replace(/\s+/g, " ");
  const m = /On the current split the shipped model scores none ([\d.]+), explicit ([\d.]+), latent ([\d.]+)/.exec(
    text,
  );
  assert.ok(m, "models/README.md no longer states the current split's figures in the form this test reads");
  assert.deepEqual([m[1], m[2], m[3]].map(Number), [
    evaluation.accuracy.none,
    evaluation.accuracy.explicit,
    evaluation.accuracy.latent,
  ]);
  assert.equal(evaluation.programs, 1000);
  assert.ok(text.includes(evaluation.command), `models/README.md should give the command: ${evaluation.command}`);
});
