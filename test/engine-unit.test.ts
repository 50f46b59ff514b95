import { test } from "node:test";
import assert from "node:assert/strict";
import { BlockManager } from "../src/engine/block-manager.ts";
import { Engine } from "../src/engine/engine.ts";
import { Scheduler } from "../src/engine/scheduler.ts";
import type { EngineEvent, GenerateRequest } from "../src/engine/types.ts";
import { greedySampling } from "./helpers/factories.ts";
import { D, K, SPECIAL, type Faults, fakeRunner } from "./helpers/fake-runner.ts";

// The engine's update logic with a fake runner (helpers/fake-runner.ts: logits favour the last
// input token + 1, mu = 0.5, sigma = 1).
function makeEngine(events: EngineEvent[], faults: Faults = {}) {
  const blocks = new BlockManager({ numBlocks: 32, blockSize: 4, enablePrefixCaching: true });
  const scheduler = new Scheduler({ maxNumSeqs: 8, maxNumBatchedTokens: 64 }, blocks);
  const detok = { decode: (ids: number[]) => ids.map((i) => `t${i}`).join(" ") };
  const engine = new Engine(fakeRunner(faults), scheduler, blocks, detok, SPECIAL, 64, (e) => events.push(e));
  return { engine, blocks };
}

const request = (id: string, promptIds: number[], s = {}): GenerateRequest => ({
  kind: "generate",
  id,
  promptIds,
  opensLatentSpan: promptIds.at(-1) === SPECIAL.bot,
  sampling: greedySampling(s),
  latent: { temperature: 0, returnVectors: true },
  choiceIndex: 0,
  leaderId: null,
});

async function run(engine: Engine) {
  for (let i = 0; i < 100 && engine.hasWork; i++) await engine.step();
}

test("text runs to max_tokens with the detokenized deltas, then every block is free", async () => {
  const events: EngineEvent[] = [];
  const { engine, blocks } = makeEngine(events);
  engine.add(request("a", [1, 2, 3], { maxTokens: 4 }));
  await run(engine);
  const tokens = events.filter((e) => e.type === "token");
  assert.deepEqual(
    tokens.map((e) => e.type === "token" && e.tokenId),
    [4, 5, 6, 7],
  );
  assert.deepEqual(
    tokens.map((e) => e.type === "token" && e.text),
    ["t4", " t5", " t6", " t7"],
  );
  const fin = events.at(-1)!;
  assert.equal(fin.type, "finish");
  assert.equal(fin.type === "finish" && fin.reason, "length");
  assert.equal(blocks.numUsedBlocks, 0);
});

test("a prompt ending in <bot> samples K thoughts (u = mu at T_z = 0) with exact log-likelihoods, then text", async () => {
  const events: EngineEvent[] = [];
  const { engine } = makeEngine(events);
  engine.add(request("b", [1, 2, SPECIAL.bot], { maxTokens: 2 }));
  await run(engine);
  const thoughts = events.filter((e) => e.type === "thought");
  assert.equal(thoughts.length, K);
  const logN = -0.5 * Math.log(2 * Math.PI); // u = mu, sigma = 1: each dimension contributes this
  for (const t of thoughts) {
    assert.ok(t.type === "thought");
    assert.deepEqual([...t.vector!], [0.5, 0.5]);
    assert.ok(Math.abs(t.logProb - D * logN) < 1e-9);
  }
  // After the span the fake predicts token 5 (the last input was a thought), then 6.
  assert.deepEqual(
    events.filter((e) => e.type === "token").map((e) => e.type === "token" && e.tokenId),
    [5, 6],
  );
  const fin = events.at(-1)!;
  assert.ok(fin.type === "finish" && fin.thoughts === K && fin.completionTokens === 2);
});

test("a stop string ends the output before it; a stop token ends it unsaid; a sampled <bot> opens a span", async () => {
  const events: EngineEvent[] = [];
  const { engine } = makeEngine(events);
  engine.add(request("c", [1], { maxTokens: 10, stop: [" t4"] }));
  engine.add(request("d", [12], { maxTokens: 3 })); // 13, then 14 = <bot>: a span of K thoughts, then 5
  engine.add(request("e", [9], { maxTokens: 10, stopTokenIds: [12] }));
  await run(engine);
  const of = (id: string, type: EngineEvent["type"]) => events.filter((e) => e.id === id && e.type === type);
  const text = (id: string) =>
    of(id, "token")
      .map((e) => (e.type === "token" ? e.text : ""))
      .join("");
  const reason = (id: string) => of(id, "finish").map((e) => (e.type === "finish" ? e.reason : ""))[0];
  assert.equal(text("c"), "t2 t3");
  assert.equal(reason("c"), "stop");
  assert.deepEqual(
    of("e", "token").map((e) => e.type === "token" && e.tokenId),
    [10, 11],
  );
  assert.equal(reason("e"), "stop");
  assert.deepEqual(
    of("d", "token").map((e) => e.type === "token" && e.tokenId),
    [13, 14, 5],
  );
  assert.equal(of("d", "thought").length, K);
  assert.equal(reason("d"), "length");
});

test("scoring returns each thought's density and each answer token's log-prob", async () => {
  const events: EngineEvent[] = [];
  const { engine } = makeEngine(events);
  const u = [new Float32Array([0.5, 0.5]), new Float32Array([1.5, 0.5]), new Float32Array([0.5, -0.5])];
  engine.add({ kind: "score", id: "s", promptIds: [1, 2, SPECIAL.bot], thoughts: u, answerIds: [5, 6] });
  await run(engine);
  const s = events.find((e) => e.type === "score");
  assert.ok(s && s.type === "score");
  const logN = -0.5 * Math.log(2 * Math.PI);
  assert.deepEqual(
    s.thoughtLogProbs.map((x) => Number(x.toFixed(9))),
    [2 * logN, 2 * logN - 0.5, 2 * logN - 0.5].map((x) => Number(x.toFixed(9))),
  );
  // The fake puts logit 10 on the predicted token: log-softmax = 10 - log(e^10 + 15).
  const top = 10 - Math.log(Math.exp(10) + 15);
  assert.deepEqual(
    s.answerLogprobs.map((a) => a.tokenId),
    [5, 6],
  );
  for (const a of s.answerLogprobs) assert.ok(Math.abs(a.logprob - top) < 1e-9);
});

/** Each request's token ids, in order. */
function tokensById(events: EngineEvent[]): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const e of events) if (e.type === "token") out[e.id] = [...(out[e.id] ?? []), e.tokenId];
  return out;
}

test("greedy steps read the backbone's top-k outputs instead of the logits, with the same tokens", async () => {
  const runWith = async (topK: number) => {
    const events: EngineEvent[] = [];
    const logitsFetched: boolean[] = [];
    const { engine, blocks } = makeEngine(events, { topK, logitsFetched });
    engine.add(request("a", [1, 2, 3], { maxTokens: 4 }));
    engine.add(request("b", [5, 6], { maxTokens: 3 }));
    await run(engine);
    assert.equal(blocks.numUsedBlocks, 0);
    return { tokens: tokensById(events), logitsFetched, fallbacks: engine.stats().topLogitsFallbacks };
  };
  const full = await runWith(0);
  assert.deepEqual(full.tokens, { a: [4, 5, 6, 7], b: [7, 8, 9] });
  assert.ok(full.logitsFetched.every((x) => x));
  const top = await runWith(4);
  assert.deepEqual(top.tokens, full.tokens);
  assert.deepEqual(top.logitsFetched, [false, false, false, false]);
  assert.equal(top.fallbacks, 0);
});

test("a greedy row whose bans cover its top k runs the step again with the logits", async () => {
  const events: EngineEvent[] = [];
  const logitsFetched: boolean[] = [];
  const { engine } = makeEngine(events, { topK: 1, logitsFetched });
  // The fake favours 4 after 3; min_tokens bans stop id 4 for the first token, so top-1 = [4] is
  // banned: the full row's greedy choice is the lowest allowed id of the tied rest (0 is pad: 1).
  engine.add(request("a", [1, 2, 3], { maxTokens: 3, minTokens: 2, stopTokenIds: [4] }));
  await run(engine);
  assert.deepEqual(tokensById(events), { a: [1, 2, 3] });
  assert.deepEqual(logitsFetched, [false, true, false, false]);
  assert.equal(engine.stats().topLogitsFallbacks, 1);
});

test("a step with a row that reports log-probs or samples fetches the logits for every row", async () => {
  for (const other of [{ logprobs: true }, { temperature: 0.7, seed: 3 }]) {
    const events: EngineEvent[] = [];
    const logitsFetched: boolean[] = [];
    const { engine } = makeEngine(events, { topK: 4, logitsFetched });
    engine.add(request("a", [1, 2, 3], { maxTokens: 2 }));
    engine.add(request("b", [1, 2, 3], { maxTokens: 2, ...other }));
    await run(engine);
    assert.deepEqual(tokensById(events).a, [4, 5]);
    assert.deepEqual(logitsFetched, [true, true], JSON.stringify(other));
  }
});
