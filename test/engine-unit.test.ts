import { test } from "node:test";
import assert from "node:assert/strict";
import { BlockManager } from "../src/engine/block-manager.ts";
import { Engine } from "../src/engine/engine.ts";
import { Scheduler } from "../src/engine/scheduler.ts";
import type { EngineEvent, GenerateRequest } from "../src/engine/types.ts";
import { greedySampling } from "./helpers/factories.ts";
import { D, K, SPECIAL, fakeRunner } from "./helpers/fake-runner.ts";

// The engine's update logic with a fake runner (helpers/fake-runner.ts: logits favour the last
// input token + 1, mu = 0.5, sigma = 1).
function makeEngine(events: EngineEvent[]) {
  const blocks = new BlockManager({ numBlocks: 32, blockSize: 4, enablePrefixCaching: true });
  const scheduler = new Scheduler({ maxNumSeqs: 8, maxNumBatchedTokens: 64 }, blocks);
  const detok = { decode: (ids: number[]) => ids.map((i) => `t${i}`).join(" ") };
  return { engine: new Engine(fakeRunner(), scheduler, blocks, detok, SPECIAL, 64, (e) => events.push(e)), blocks };
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
