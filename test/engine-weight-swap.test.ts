import { test } from "node:test";
import assert from "node:assert/strict";
import { BlockManager } from "../src/engine/block-manager.ts";
import { Engine } from "../src/engine/engine.ts";
import type { ForwardRow, Runner } from "../src/engine/runner.ts";
import { Scheduler } from "../src/engine/scheduler.ts";
import type { EngineEvent, GenerateRequest } from "../src/engine/types.ts";
import { greedySampling } from "./helpers/factories.ts";

// The swap protocol with fake runners (one layer under test): runner "old" favours token
// (last + 2), runner "new" token (last + 3), so every token tells which weights produced it.
const V = 32;
const SPECIAL = { eos: 31, bot: 30, pad: 0 };

function fakeRunner(step: number, calls: string[], name: string): Runner {
  return {
    vocabSize: V,
    thoughtDim: 2,
    numThoughts: 2,
    hasFlow: false,
    async forward(rows: ForwardRow[]) {
      calls.push(name);
      const n = rows.reduce((s, r) => s + r.outputs.length, 0);
      const logits = new Float32Array(n * V);
      let o = 0;
      for (const r of rows)
        for (const p of r.outputs) logits[o++ * V + ((r.tokens[p - r.start]! + step) % 29) + 1] = 10;
      return { logits, mu: new Float32Array(n * 2), logSigma: new Float32Array(n * 2) };
    },
  } as unknown as Runner;
}

const req = (id: string, prompt: number[], maxTokens: number, weightsVersion?: string): GenerateRequest => ({
  kind: "generate",
  id,
  promptIds: prompt,
  opensLatentSpan: false,
  sampling: greedySampling({ maxTokens }),
  latent: { temperature: 0, returnVectors: false },
  choiceIndex: 0,
  leaderId: null,
  ...(weightsVersion ? { weightsVersion } : {}),
});

test("an armed swap waits for the old weights' requests, holds the new ones, then swaps between steps and flushes the prefix cache", async () => {
  const events: EngineEvent[] = [];
  const calls: string[] = [];
  const blocks = new BlockManager({ numBlocks: 64, blockSize: 2, enablePrefixCaching: true });
  const scheduler = new Scheduler({ maxNumSeqs: 8, maxNumBatchedTokens: 64 }, blocks);
  const detok = { decode: (ids: number[]) => ids.join(" ") };
  const engine = new Engine(
    fakeRunner(1, calls, "old"),
    scheduler,
    blocks,
    detok,
    SPECIAL,
    64,
    (e) => events.push(e),
    Date.now,
    "v0",
  );

  engine.add(req("old-long", [1, 2, 3, 4], 6, "v0"));
  await engine.step(); // prefill + first token under the old weights
  engine.armSwap(fakeRunner(2, calls, "new"), "v1");
  engine.add(req("new-a", [1, 2, 3, 4], 3, "v1")); // same prompt: would hit the cached blocks
  assert.equal(engine.swapIfReady(), null, "the old request is still running");
  const before = calls.length;
  while (!events.some((e) => e.type === "finish" && e.id === "old-long")) {
    assert.equal(engine.swapIfReady(), null, "no swap while an old request is live");
    await engine.step();
  }
  assert.ok(
    calls.slice(before).every((c) => c === "old"),
    "nothing ran on the new weights while draining",
  );
  assert.ok(!events.some((e) => e.id === "new-a" && e.type === "token"), "the new request was held");
  const old = engine.swapIfReady();
  assert.ok(old, "swapped once drained");
  assert.equal(engine.version, "v1");
  assert.equal(engine.swapArmed, false);
  while (engine.hasWork) await engine.step();

  const tokens = (id: string) =>
    events.filter((e) => e.type === "token" && e.id === id).map((e) => (e as { tokenId: number }).tokenId);
  const finish = (id: string) =>
    events.find((e) => e.type === "finish" && e.id === id) as Extract<EngineEvent, { type: "finish" }>;
  assert.deepEqual(tokens("old-long"), [6, 8, 10, 12, 14, 16], "old weights: +2");
  assert.deepEqual(tokens("new-a"), [7, 10, 13], "new weights: +3");
  assert.equal(finish("old-long").weightsVersion, "v0");
  assert.equal(finish("new-a").weightsVersion, "v1");
  // The flushed cache: the new request's prompt was computed, not taken from the old weights' blocks.
  assert.equal(finish("new-a").cachedTokens, 0);
});

test("with no swap armed nothing is held, and requests without a stamp are never held", async () => {
  const events: EngineEvent[] = [];
  const calls: string[] = [];
  const blocks = new BlockManager({ numBlocks: 64, blockSize: 2, enablePrefixCaching: true });
  const scheduler = new Scheduler({ maxNumSeqs: 8, maxNumBatchedTokens: 64 }, blocks);
  const engine = new Engine(
    fakeRunner(1, calls, "old"),
    scheduler,
    blocks,
    { decode: (ids: number[]) => ids.join(" ") },
    SPECIAL,
    64,
    (e) => events.push(e),
  );
  engine.add(req("a", [1, 2], 2, "v1"));
  engine.add(req("b", [3, 4], 2));
  while (engine.hasWork) await engine.step();
  assert.equal(events.filter((e) => e.type === "finish").length, 2);
  assert.equal(engine.swapIfReady(), null);
  assert.throws(() => {
    engine.armSwap(fakeRunner(2, calls, "new"), "v1");
    engine.armSwap(fakeRunner(3, calls, "newer"), "v2");
  }, /already armed/);
});
