import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { SHIPPED_MODEL } from "./helpers/python.ts";

/** The README's accuracy claims are the shipped manifest's recorded evaluation (written from
 * `python -m nfcot.serve_eval` on the test split), not numbers typed by hand. */

test("README accuracy numbers equal the shipped manifest's recorded evaluation", () => {
  const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8").replace(/\s+/g, " ");
  const ev = JSON.parse(readFileSync(`${SHIPPED_MODEL}/manifest.json`, "utf8")).evaluation;
  assert.equal(ev.split, "test");
  const pct = (x: number) => (100 * x).toFixed(1);
  const claims: [RegExp, number][] = [
    [/answers ([\d.]+)% of the programs right in `explicit` mode/, ev.explicit],
    [/([\d.]+)% in `latent` mode with thoughts at their mean/, ev.latent_greedy],
    [/([\d.]+)% with thoughts sampled at T_z = ([\d.]+)/, ev.latent_pass_at_1],
    [/and ([\d.]+)% in `none` mode/, ev.none],
  ];
  for (const [re, value] of claims) {
    const m = re.exec(readme);
    assert.ok(m, `README states ${re}`);
    assert.equal(m[1], pct(value), `${re}: README ${m[1]}%, manifest ${pct(value)}%`);
  }
  assert.equal(Number(/sampled at T_z = ([\d.]+)/.exec(readme)![1]), ev.latent_temperature);
  assert.doesNotMatch(readme, /56-58%/);
});
