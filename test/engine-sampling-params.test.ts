import assert from "node:assert/strict";
import { test } from "node:test";
import { BlockManager } from "../src/engine/block-manager.ts";
import { Engine } from "../src/engine/engine.ts";
import { Scheduler } from "../src/engine/scheduler.ts";
import type { EngineEvent, GenerateRequest, SamplingParams, ScoreRequest } from "../src/engine/types.ts";
import { greedySampling } from "./helpers/factories.ts";
import { SPECIAL, V, fakeRunner } from "./helpers/fake-runner.ts";

/** logit_bias, min_tokens, stop_token_ids and scoring with ranks in the engine, over the fake
 * runner (logits: 10 for last token + 1, 0 elsewhere; pad 0 and eos 15 are special). */

function makeEngine(events: EngineEvent[], special: typeof SPECIAL = SPECIAL) {
  const blocks = new BlockManager({ numBlocks: 32, blockSize: 4, enablePrefixCaching: true });
  const scheduler = new Scheduler({ maxNumSeqs: 8, maxNumBatchedTokens: 64 }, blocks);
  const detok = { decode: (ids: number[]) => ids.map((i) => `t${i}`).join(" ") };
  return new Engine(fakeRunner(), scheduler, blocks, detok, special, 64, (e) => events.push(e));
}

async function generate(s: Partial<SamplingParams>, promptIds = [1, 2, 3], special = SPECIAL) {
  const events: EngineEvent[] = [];
  const engine = makeEngine(events, special);
  const req: GenerateRequest = {
    kind: "generate",
    id: "g",
    promptIds,
    sampling: greedySampling({ maxTokens: 5, ...s }),
    opensLatentSpan: false,
    latent: { temperature: 0, returnVectors: false },
    choiceIndex: 0,
    leaderId: null,
  };
  engine.add(req);
  for (let i = 0; i < 50 && engine.hasWork; i++) await engine.step();
  const tokens = events.filter((e) => e.type === "token") as Extract<EngineEvent, { type: "token" }>[];
  const finish = events.find((e) => e.type === "finish") as Extract<EngineEvent, { type: "finish" }>;
  return { tokens, ids: tokens.map((t) => t.tokenId), finish };
}

// log softmax of the fake's logits: 10 for one id, 0 for the other V - 1.
const LSE = Math.log(Math.exp(10) + (V - 1));

test("logit_bias moves greedy decoding; reported logprobs stay the model's own (before the bias)", async () => {
  const plain = await generate({ logprobs: true });
  assert.deepEqual(plain.ids, [4, 5, 6, 7, 8]);
  const biased = await generate({ logprobs: true, logitBias: [[9, 20]] });
  assert.deepEqual(biased.ids, [9, 9, 9, 9, 9]);
  // Raw logit of 9 is 0 at every step (the favoured id is 10 after 9, 4 after the prompt).
  for (const t of biased.tokens) assert.ok(Math.abs(t.logprob! - (0 - LSE)) < 1e-6);
  const banned = await generate({ logitBias: [[4, -100]] });
  assert.deepEqual(banned.ids.slice(0, 1), [1]); // 4 pushed below the zeros; the lowest id (pad is never sampled) wins
});

test("stop_token_ids end a choice with finish stop, the stop token not emitted", async () => {
  const r = await generate({ stopTokenIds: [6] });
  assert.deepEqual(r.ids, [4, 5]);
  assert.equal(r.finish.reason, "stop");
  assert.equal(r.finish.completionTokens, 2);
});

test("min_tokens masks stop token ids (and EOS) until that many text tokens exist", async () => {
  const r = await generate({ stopTokenIds: [5], minTokens: 3, maxTokens: 8 });
  // Step 2 would stop on 5: masked, the best left is 1 (0 is pad); after 3 tokens 5 may stop it again.
  assert.deepEqual(r.ids, [4, 1, 2, 3, 4]);
  assert.equal(r.finish.reason, "stop");
  // With 6 as EOS: the same, ending at EOS.
  const special = { ...SPECIAL, eos: 6 };
  assert.deepEqual((await generate({ maxTokens: 8 }, [1, 2, 3], special)).ids, [4, 5]);
  const eos = await generate({ minTokens: 3, maxTokens: 8 }, [1, 2, 3], special);
  assert.deepEqual(eos.ids, [4, 5, 1, 2, 3, 4, 5]);
  assert.equal(eos.finish.reason, "stop");
});

test("min_tokens: stop strings match only in text generated after the min_tokens-th token", async () => {
  const early = await generate({ stop: ["t5"], maxTokens: 6 });
  assert.deepEqual(early.tokens.map((t) => t.text).join(""), "t4 ");
  const late = await generate({ stop: ["t5"], minTokens: 2, maxTokens: 6 });
  assert.deepEqual(late.ids, [4, 5, 6, 7, 8, 9]);
  assert.equal(late.finish.reason, "length");
  const after = await generate({ stop: ["t7"], minTokens: 2, maxTokens: 6 });
  assert.equal(after.tokens.map((t) => t.text).join("") + after.finish.tail, "t4 t5 t6 ");
  assert.equal(after.finish.reason, "stop");
});

test("with logprobs each token event carries its own detokenized piece, held back or not", async () => {
  const r = await generate({ logprobs: true, stop: ["t6 t9"] });
  assert.deepEqual(
    r.tokens.map((t) => t.piece),
    ["t4", " t5", " t6", " t7", " t8"],
  );
  // "t6" may start the stop string: held until " t7" shows it does not.
  assert.deepEqual(
    r.tokens.map((t) => t.text),
    ["t4", " t5", " ", "t6 t7", " t8"],
  );
});

test("scoring with topLogprobs gives each given token's rank and the most likely tokens", async () => {
  const events: EngineEvent[] = [];
  const engine = makeEngine(events);
  const req: ScoreRequest = { kind: "score", id: "s", promptIds: [1], thoughts: [], answerIds: [2, 9], topLogprobs: 2 };
  engine.add(req);
  for (let i = 0; i < 20 && engine.hasWork; i++) await engine.step();
  const s = events.find((e) => e.type === "score") as Extract<EngineEvent, { type: "score" }>;
  const [a, b] = s.answerLogprobs;
  assert.equal(a!.rank, 1);
  assert.ok(Math.abs(a!.logprob - (10 - LSE)) < 1e-6);
  assert.deepEqual(
    a!.top!.map((t) => t.tokenId),
    [2, 0],
  ); // ties at 0: lowest id first
  assert.equal(b!.rank, 2); // only 3 (after 2) is more likely than 9
  assert.ok(Math.abs(b!.logprob - (0 - LSE)) < 1e-6);
  assert.deepEqual(
    b!.top!.map((t) => t.tokenId),
    [3, 0],
  );
  const plain: ScoreRequest = { kind: "score", id: "p", promptIds: [1], thoughts: [], answerIds: [2] };
  engine.add(plain);
  for (let i = 0; i < 20 && engine.hasWork; i++) await engine.step();
  const p = events.filter((e) => e.type === "score").at(-1) as Extract<EngineEvent, { type: "score" }>;
  assert.deepEqual(Object.keys(p.answerLogprobs[0]!), ["tokenId", "logprob"]); // no rank unless asked
});
