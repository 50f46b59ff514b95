import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { IncrementalDetokenizer } from "../src/engine/detokenizer.ts";
import { StopMatcher } from "../src/engine/stop-matcher.ts";
import type { ModelTokenizer } from "../src/model/tokenizer.ts";
import { echoPrompt } from "../src/api/prompt-logprobs.ts";
import { attributeTokens, TokenTextAttribution, type SampledToken } from "../src/api/token-text.ts";
import { tokenizer as shipped } from "./helpers/engine.ts";
import { qwen3Tokenizer } from "./helpers/qwen3-tokenizer.ts";

/** Logprob tokens rebuild the returned text exactly (strings and UTF-8 bytes), for the shipped
 * word-level tokenizer and Qwen3's byte-level BPE: the token events are made as the engine makes
 * them (incremental detokenizer, then the stop matcher). */

const qwen3 = qwen3Tokenizer();

/** What the engine emits for `ids` (greedy output) with these stop strings: token events and the tail. */
function engineEvents(tok: ModelTokenizer, ids: number[], stops: string[] = []) {
  const detok = new IncrementalDetokenizer(tok);
  const stop = new StopMatcher(stops);
  const events: SampledToken[] = [];
  for (const id of ids) {
    const piece = detok.push(id);
    const { delta, stopped } = stop.push(detok.text);
    events.push({ tokenId: id, text: delta, piece, logprob: -1, top: [] });
    if (stopped) return { events, content: events.map((e) => e.text).join("") };
  }
  const tail = stop.flush(detok.text);
  return { events, content: events.map((e) => e.text).join("") + tail };
}

function checkRebuilds(tok: ModelTokenizer, ids: number[], stops: string[] = []) {
  const { events, content } = engineEvents(tok, ids, stops);
  const whole = attributeTokens(events, content, tok);
  assert.equal(whole.length, events.length, "one logprob entry per sampled token");
  assert.equal(whole.map((t) => t.text).join(""), content);
  assert.deepEqual(Buffer.from(whole.flatMap((t) => t.bytes)), Buffer.from(content, "utf8"));
  // Streamed: the same entries, each released once its text is known to be content.
  const a = new TokenTextAttribution(tok);
  const streamed = events.flatMap((e) => a.token(e));
  streamed.push(...a.finish(content.slice(events.map((e) => e.text).join("").length)));
  assert.deepEqual(streamed, whole);
  return { whole, content };
}

describe("shipped word-level tokenizer", () => {
  const ids = shipped.encode("a = 5\nb = a * 3\nprint(b)");
  test("tokens carry the decoder's spaces: they join to the content", () => {
    const { whole, content } = checkRebuilds(shipped, ids);
    assert.equal(content, "a = 5\nb = a * 3\nprint ( b )");
    assert.deepEqual(
      whole.slice(0, 6).map((t) => t.text),
      ["a", " =", " 5", "\n", "b", " ="],
    );
    assert.deepEqual(whole[1]!.bytes, [32, 61]);
  });
  test("a stop string cuts the tokens' texts where it cuts the content", () => {
    const { whole, content } = checkRebuilds(shipped, ids, ["= a *"]);
    assert.equal(content, "a = 5\nb ");
    assert.deepEqual(
      whole.slice(4).map((t) => t.text),
      ["b", " ", "", ""],
    );
  });
  test("echo: the prompt as sent, each token's part of it (spaces the tokenizer dropped go to the next token)", () => {
    const e = echoPrompt("a  = 1\nprint(a)", shipped.encode("a  = 1\nprint(a)"), shipped);
    assert.equal(e.text, "a  = 1\nprint(a)");
    assert.deepEqual(e.pieces, ["a", "  =", " 1", "\n", "print", "(", "a", ")"]);
    const ids2 = [21, 12, 147];
    assert.deepEqual(echoPrompt(null, ids2, shipped), { text: "a = 1", pieces: ["a", " =", " 1"] });
  });
});

describe("Qwen3 byte-level BPE", () => {
  test("characters split over tokens: the partial tokens have no text but their own bytes", () => {
    const ids = qwen3.encode("𝔘𝔫𝔦 🦜🦜 ꙮ done");
    const { whole, content } = checkRebuilds(qwen3, ids);
    assert.equal(content, "𝔘𝔫𝔦 🦜🦜 ꙮ done");
    assert.deepEqual(
      whole.slice(0, 2).map((t) => t.text),
      ["", "𝔘"],
    );
    assert.deepEqual(whole[0]!.bytes, qwen3.tokenBytes(ids[0]!));
    assert.ok(whole[0]!.bytes.length > 0);
  });
  test("a special token the decoder skips: no text, no bytes", () => {
    const ids = [...qwen3.encode("Hello"), ...qwen3.encode("<|im_start|>"), ...qwen3.encode(" 你好 😀")];
    const { whole } = checkRebuilds(qwen3, ids);
    assert.deepEqual(whole[1], { tokenId: ids[1], text: "", bytes: [], logprob: -1, top: [] });
  });
  test("a stop string inside a split character's neighbourhood", () => {
    checkRebuilds(qwen3, qwen3.encode("ab 🦜🦜 cd 🦜 ef"), ["🦜 c"]);
    checkRebuilds(qwen3, qwen3.encode("ab 🦜🦜 cd 🦜 ef"), ["d 🦜"]);
  });
  test("echo of a prompt the normalizer changed: the prompt as the model read it", () => {
    const sent = "cafe\u0301 x"; // NFD; Qwen3 normalizes to NFC
    const e = echoPrompt(sent, qwen3.encode(sent), qwen3);
    assert.equal(e.text, "caf\u00e9 x");
    assert.equal(e.pieces.join(""), e.text);
    const same = echoPrompt("Hello 你好", qwen3.encode("Hello 你好"), qwen3);
    assert.equal(same.text, "Hello 你好");
  });
});
