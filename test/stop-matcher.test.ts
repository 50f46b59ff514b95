import { test } from "node:test";
import assert from "node:assert/strict";
import { StopMatcher } from "../src/engine/stop-matcher.ts";
import { IncrementalDetokenizer } from "../src/engine/detokenizer.ts";

function feed(stops: string[], pieces: string[]) {
  const m = new StopMatcher(stops);
  let text = "";
  const deltas: string[] = [];
  for (const p of pieces) {
    text += p;
    const r = m.push(text);
    deltas.push(r.delta);
    if (r.stopped) return { deltas, stopped: true, tail: m.flush(text) };
  }
  return { deltas, stopped: false, tail: m.flush(text) };
}

test("text before a stop string is released, the stop string is not", () => {
  const r = feed(["\n\n"], ["a", " =", " 5", "\n", "\n", "b"]);
  assert.deepEqual(r.deltas, ["a", " =", " 5", "", ""]);
  assert.equal(r.stopped, true);
  assert.equal(r.tail, "");
});

test("a partial stop string is held back, then released when it does not complete", () => {
  const r = feed(["END"], ["x", " E", "N", "Q", " y"]);
  assert.deepEqual(r.deltas, ["x", " ", "", "ENQ", " y"]);
  assert.equal(r.stopped, false);
});

test("held-back text comes out at the end as the tail", () => {
  const r = feed(["END"], ["x", " EN"]);
  assert.deepEqual(r.deltas, ["x", " "]);
  assert.equal(r.tail, "EN");
});

test("the earliest of several stop strings wins", () => {
  const r = feed(["c", "b"], ["ab", "c"]);
  assert.deepEqual(r.deltas, ["a"]);
  assert.equal(r.stopped, true);
});

test("incremental detokenization equals decoding the whole output", () => {
  const vocab = ["a", "=", "5", "\n", "b", "15"];
  const tok = {
    decode: (ids: number[]) =>
      ids
        .map((i) => vocab[i])
        .join(" ")
        .replace(/ ?\n ?/g, "\n"),
  };
  const d = new IncrementalDetokenizer(tok);
  const ids = [0, 1, 2, 3, 4, 1, 5];
  const deltas = ids.map((i) => d.push(i));
  assert.deepEqual(deltas, ["a", " =", " 5", "\n", "b", " =", " 15"]);
  assert.equal(d.text, tok.decode(ids));
});

test("a token that completes no character yet is held until one does", () => {
  const tok = { decode: (ids: number[]) => (ids.length % 2 ? "\uFFFD".repeat(1) : "é".repeat(ids.length / 2)) };
  const d = new IncrementalDetokenizer(tok);
  assert.equal(d.push(1), "");
  assert.equal(d.push(2), "é");
});
