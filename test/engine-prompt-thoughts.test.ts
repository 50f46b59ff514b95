import { test } from "node:test";
import assert from "node:assert/strict";
import { BlockManager } from "../src/engine/block-manager.ts";
import { Engine } from "../src/engine/engine.ts";
import type { ForwardRow, Runner } from "../src/engine/runner.ts";
import { Scheduler } from "../src/engine/scheduler.ts";
import { THOUGHT } from "../src/model/positions.ts";
import type { EngineEvent, GenerateRequest } from "../src/engine/types.ts";
import { greedySampling } from "./helpers/factories.ts";
import { K, SPECIAL, fakeRunner } from "./helpers/fake-runner.ts";

// Generation prompts holding thought positions (an earlier latent turn carried back), with the
// fake runner (logits favour last input + 1, or 5 after a thought; mu = 0.5, sigma = 1), blocks
// of 4 positions. T stands for a thought position.
const T = THOUGHT;
const v = (a: number, b: number) => new Float32Array([a, b]);

function makeEngine(events: EngineEvent[], rows: ForwardRow[][] = []) {
  const blocks = new BlockManager({ numBlocks: 32, blockSize: 4, enablePrefixCaching: true });
  const scheduler = new Scheduler({ maxNumSeqs: 8, maxNumBatchedTokens: 64 }, blocks);
  const detok = { decode: (ids: number[]) => ids.map((i) => `t${i}`).join(" ") };
  const fake = fakeRunner();
  // Records every forward call's rows.
  const runner = {
    vocabSize: fake.vocabSize,
    thoughtDim: fake.thoughtDim,
    numThoughts: fake.numThoughts,
    forward: (r: ForwardRow[]) => {
      rows.push(r.map((x) => ({ ...x, tokens: Array.from(x.tokens), thoughts: Array.from(x.thoughts) })));
      return fake.forward(r);
    },
  } as unknown as Runner;
  return { engine: new Engine(runner, scheduler, blocks, detok, SPECIAL, 64, (e) => events.push(e)), blocks };
}

const request = (
  id: string,
  promptIds: number[],
  promptThoughts: Float32Array[] | undefined,
  maxTokens = 2,
): GenerateRequest => ({
  kind: "generate",
  id,
  promptIds,
  opensLatentSpan: promptIds.at(-1) === SPECIAL.bot,
  ...(promptThoughts ? { promptThoughts } : {}),
  sampling: greedySampling({ maxTokens }),
  latent: { temperature: 0, returnVectors: true },
  choiceIndex: 0,
  leaderId: null,
});

async function run(engine: Engine) {
  for (let i = 0; i < 100 && engine.hasWork; i++) await engine.step();
}

const of = (events: EngineEvent[], id: string) => events.filter((e) => e.id === id);
const finishOf = (events: EngineEvent[], id: string) =>
  of(events, id).find((e) => e.type === "finish") as Extract<EngineEvent, { type: "finish" }>;

test("a prompt's thought positions are fed as thought inputs with their vectors; only the new span's thoughts are sampled", async () => {
  const events: EngineEvent[] = [];
  const rows: ForwardRow[][] = [];
  const { engine, blocks } = makeEngine(events, rows);
  const given = [v(1, 2), v(3, 4), v(5, 6)];
  engine.add(request("a", [1, 2, SPECIAL.bot, T, T, T, 5, SPECIAL.eos, 7, SPECIAL.bot], given));
  await run(engine);
  // The prefill: one row of the whole prompt, thought vectors at exactly the THOUGHT positions.
  const prefill = rows[0]![0]!;
  assert.deepEqual(prefill.tokens, [1, 2, SPECIAL.bot, T, T, T, 5, SPECIAL.eos, 7, SPECIAL.bot]);
  assert.deepEqual(
    Array.from(prefill.thoughts, (x) => (x ? [...x] : null)),
    [null, null, null, [1, 2], [3, 4], [5, 6], null, null, null, null],
  );
  assert.equal(prefill.start, 0);
  assert.deepEqual(prefill.outputs, [9]);
  // Then the new span: K thoughts (indexes 0..K-1, u = mu at T_z = 0) and two tokens (5, 6).
  const thoughts = of(events, "a").filter((e) => e.type === "thought");
  assert.deepEqual(
    thoughts.map((e) => e.type === "thought" && e.index),
    [0, 1, 2],
  );
  for (const t of thoughts) assert.ok(t.type === "thought" && [...t.vector!].every((x) => x === 0.5));
  assert.deepEqual(
    of(events, "a").flatMap((e) => (e.type === "token" ? [e.tokenId] : [])),
    [5, 6],
  );
  const fin = finishOf(events, "a");
  assert.deepEqual(
    [fin.reason, fin.promptTokens, fin.thoughts, fin.completionTokens, fin.cachedTokens],
    ["length", 10, K, 2, 0],
  );
  assert.equal(blocks.numUsedBlocks, 0);
});

test("a continued latent turn is served from the prefix cache up to its last computed block; other vectors are a miss from their block on", async () => {
  const events: EngineEvent[] = [];
  const { engine, blocks } = makeEngine(events);
  // Turn 1: [1, 2, <bot>] + 3 thoughts (0.5, 0.5) + tokens 5, 6, 7: 8 positions computed (7 is sampled last, never run).
  engine.add(request("first", [1, 2, SPECIAL.bot], undefined, 3));
  await run(engine);
  const drawn = of(events, "first").flatMap((e) => (e.type === "thought" ? [e.vector!] : []));
  assert.equal(drawn.length, K);
  const continued = [1, 2, SPECIAL.bot, T, T, T, 5, 6, 7, SPECIAL.eos, 9, SPECIAL.bot];
  engine.add(
    request(
      "same",
      continued,
      drawn.map((x) => x.slice()),
    ),
  );
  await run(engine);
  assert.equal(finishOf(events, "same").cachedTokens, 8); // both full blocks: [1 2 <bot> T] [T T 5 6]
  // The third thought differs (position 5, block 1): block 0 still matches, block 1 does not.
  engine.add(request("other", continued, [drawn[0]!, drawn[1]!, v(0.5, 0.25)]));
  await run(engine);
  assert.equal(finishOf(events, "other").cachedTokens, 4);
  // Only the new span's thoughts were sampled in each continuation.
  for (const id of ["same", "other"]) assert.equal(of(events, id).filter((e) => e.type === "thought").length, K);
  assert.equal(blocks.numUsedBlocks, 0);
});

test("a prompt whose thought vectors don't match its thought positions is refused alone, holding nothing", async () => {
  const events: EngineEvent[] = [];
  const { engine, blocks } = makeEngine(events);
  const cases: [string, number[], Float32Array[] | undefined, string][] = [
    ["fewer", [1, T, T, 2], [v(0, 0)], "the prompt has 2 thought positions but 1 thought vectors"],
    ["more", [1, T, 2], [v(0, 0), v(1, 1)], "the prompt has 1 thought positions but 2 thought vectors"],
    ["none", [1, T, 2], undefined, "the prompt has 1 thought positions but 0 thought vectors"],
    ["unplaced", [1, 2], [v(0, 0)], "the prompt has 0 thought positions but 1 thought vectors"],
    ["short", [1, T, 2], [new Float32Array([0])], "prompt thought 0 has 1 dimensions; the model's thoughts have 2"],
    ["nan", [1, T, T, 2], [v(0, 0), v(0, NaN)], "prompt thought 1 has a non-finite value (NaN) at dimension 1"],
    ["inf", [1, T, 2], [v(Infinity, 0)], "prompt thought 0 has a non-finite value (Infinity) at dimension 0"],
  ];
  for (const [id, ids, vs] of cases) engine.add(request(id, ids, vs));
  engine.add(request("fine", [1, T, 2], [v(0, 0)]));
  await run(engine);
  for (const [id, , , message] of cases) {
    assert.deepEqual(of(events, id), [{ type: "error", id, code: "invalid_request", message }]);
  }
  assert.equal(finishOf(events, "fine").completionTokens, 2);
  assert.equal(blocks.numUsedBlocks, 0);
  assert.equal(engine.stats().running + engine.stats().waiting, 0);
});
