import assert from "node:assert/strict";
import { test } from "node:test";
import { ReasoningSplitter, type Routed } from "../src/model/reasoning-splitter.ts";

/** Feeds pieces one by one and returns every routed group, in order. */
function run(split: ConstructorParameters<typeof ReasoningSplitter<string>>[0], pieces: string[]): Routed<string>[] {
  const s = new ReasoningSplitter<string>(split, (p) => p);
  return [...pieces.flatMap((p) => s.push(p)), ...s.finish()];
}

const side = (out: Routed<string>[], channel: string) => out.filter((r) => r.channel === channel);

test("last_line: whole lines are reasoning as soon as they end; the last line is the answer", () => {
  const s = new ReasoningSplitter<string>({ answer: "last_line" }, (p) => p);
  assert.deepEqual(s.push("a"), []);
  assert.deepEqual(s.push(" = 5"), []);
  assert.deepEqual(s.push("\n"), [{ channel: "reasoning", pieces: ["a", " = 5", "\n"], text: "a = 5\n" }]);
  assert.deepEqual(s.push("1"), []);
  assert.deepEqual(s.push("5"), []);
  assert.deepEqual(s.finish(), [{ channel: "content", pieces: ["1", "5"], text: "15" }]);
});

test("last_line: a one-line reply is all answer; pieces of each side concatenate to its text", () => {
  assert.deepEqual(run({ answer: "last_line" }, ["1", "5"]), [{ channel: "content", pieces: ["1", "5"], text: "15" }]);
  const out = run({ answer: "last_line" }, ["a = 5\nb", " = a\n", "7"]);
  assert.equal(
    side(out, "reasoning")
      .map((r) => r.text)
      .join(""),
    "a = 5\nb = a\n",
  );
  assert.equal(
    side(out, "content")
      .map((r) => r.pieces.join(""))
      .join(""),
    "7",
  );
});

test("markers: the trace between <think> and </think> is reasoning, what follows is the answer", () => {
  const out = run({ start: "<think>", end: "</think>" }, [
    "<think>",
    "\n",
    "x is 2",
    "</",
    "think",
    ">",
    "\n\n",
    "It",
    " is 2.",
  ]);
  assert.equal(
    side(out, "reasoning")
      .map((r) => r.text)
      .join(""),
    "x is 2",
  );
  assert.equal(
    side(out, "content")
      .map((r) => r.text)
      .join(""),
    "It is 2.",
  );
  // The answer's pieces, and only those, carry over (for logprobs): the marker's pieces are reasoning.
  assert.deepEqual(
    side(out, "content").flatMap((r) => r.pieces),
    ["It", " is 2."],
  );
  // Whitespace between the marker and the answer goes with the marker.
  assert.deepEqual(
    side(out, "reasoning").flatMap((r) => r.pieces),
    ["<think>", "\n", "x is 2", "</", "think", ">", "\n\n"],
  );
});

test("markers: text after the marker in the same piece is answer; no end marker means all reasoning", () => {
  const out = run({ end: "</think>" }, ["plan</think>\nyes"]);
  assert.deepEqual(out, [
    { channel: "reasoning", pieces: ["plan</think>\nyes"], text: "plan" },
    { channel: "content", pieces: [], text: "yes" },
  ]);
  assert.deepEqual(run({ end: "</think>" }, ["still", " thinking"]), [
    { channel: "reasoning", pieces: ["still"], text: "still" },
    { channel: "reasoning", pieces: [" thinking"], text: " thinking" },
  ]);
});

test("markers with a start marker: a reply that does not open with it is all answer (thinking off)", () => {
  assert.deepEqual(run({ start: "<think>", end: "</think>" }, ["<", "b>", "ok"]), [
    { channel: "content", pieces: ["<", "b>"], text: "<b>" },
    { channel: "content", pieces: ["ok"], text: "ok" },
  ]);
  // Only a prefix of the start marker before the end: answer.
  assert.deepEqual(run({ start: "<think>", end: "</think>" }, ["<thi"]), [
    { channel: "content", pieces: ["<thi"], text: "<thi" },
  ]);
  // An open trace that never ends is reasoning.
  assert.deepEqual(side(run({ start: "<think>", end: "</think>" }, ["<think>", "hmm"]), "content"), []);
});
