import { test } from "node:test";
import assert from "node:assert/strict";
import { runPython } from "./helpers/python.ts";

// The model side's own suite (task, tokenizer, flow math, paged vs dense forward, exporter),
// run from here so CI's one test command covers it.
test("models/ pytest suite passes", () => {
  const r = runPython(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], 900_000);
  assert.equal(r.status, 0, r.output);
  assert.match(r.output, /\d+ passed/);
  assert.doesNotMatch(r.output, /failed|error/i);
});
