import { test } from "node:test";
import assert from "node:assert/strict";
import { BlockManager } from "../src/engine/block-manager.ts";
import { Engine } from "../src/engine/engine.ts";
import { Scheduler } from "../src/engine/scheduler.ts";
import type { EngineEvent, GenerateRequest } from "../src/engine/types.ts";
import { greedySampling } from "./helpers/factories.ts";
import { SPECIAL, fakeRunner } from "./helpers/fake-runner.ts";

// One request never fails another, at the engine layer with the fake runner: a row holding
// THROWS makes the whole forward pass throw (as onnxruntime does for an out-of-range id), and a
// row ending in NAN gets NaN logits (a model that overflowed for that row only). The
// real-engine version is engine-fault-isolation-e2e.
const THROWS = 13;
const NAN = 12;

function makeEngine() {
  const events: EngineEvent[] = [];
  const calls: number[] = [];
  const blocks = new BlockManager({ numBlocks: 32, blockSize: 4, enablePrefixCaching: true });
  const scheduler = new Scheduler({ maxNumSeqs: 8, maxNumBatchedTokens: 64 }, blocks);
  const detok = { decode: (ids: number[]) => ids.map((i) => `t${i}`).join(" ") };
  const engine = new Engine(
    fakeRunner({ throwsOn: THROWS, nanAfter: NAN, calls }),
    scheduler,
    blocks,
    detok,
    SPECIAL,
    64,
    (e) => events.push(e),
  );
  return { engine, blocks, events, calls };
}

const request = (id: string, promptIds: number[], s = {}): GenerateRequest => ({
  kind: "generate",
  id,
  promptIds,
  opensLatentSpan: false,
  sampling: greedySampling({ maxTokens: 4, ...s }),
  latent: { temperature: 0, returnVectors: false },
  choiceIndex: 0,
  leaderId: null,
});

async function run(engine: Engine) {
  for (let i = 0; i < 100 && engine.hasWork; i++) await engine.step();
}

const CLEAN = [request("a", [1, 2]), request("b", [3, 4]), request("c", [5, 6])];

/** Per id: its token ids, then "finish:<reason>" or "error:<code>". */
function outcomes(events: EngineEvent[]): Record<string, (number | string)[]> {
  const out: Record<string, (number | string)[]> = {};
  for (const e of events) {
    out[e.id] ??= [];
    const o = out[e.id];
    if (e.type === "token") o.push(e.tokenId);
    else if (e.type === "finish") o.push(`finish:${e.reason}`);
    else if (e.type === "error") o.push(`error:${e.code}`);
  }
  return out;
}

async function cleanRun() {
  const m = makeEngine();
  for (const r of CLEAN) m.engine.add(r);
  await run(m.engine);
  return outcomes(m.events);
}

test("a forward pass that throws for one row is bisected: that row fails alone, the batch finishes as a clean run", async () => {
  const clean = await cleanRun();
  assert.deepEqual(clean["a"], [3, 4, 5, 6, "finish:length"]);
  const m = makeEngine();
  for (const r of CLEAN) m.engine.add(r);
  await m.engine.step(); // the clean requests are running
  m.calls.length = 0;
  m.engine.add(request("poison", [7, THROWS]));
  await m.engine.step();
  // 4 rows fail together, then halves [a, b] (fine) and [c, poison] (fails), then c and poison alone.
  assert.deepEqual(m.calls, [4, 2, 2, 1, 1]);
  await run(m.engine);
  const got = outcomes(m.events);
  assert.deepEqual(got["poison"], ["error:engine_error"]);
  for (const r of CLEAN) assert.deepEqual(got[r.id], clean[r.id], r.id);
  assert.equal(m.blocks.numUsedBlocks, 0, "no KV block leaks");
  const failures = m.engine.drainFailures();
  assert.deepEqual(
    failures.map((f) => f.id),
    ["poison"],
  );
  assert.match(failures[0]!.message, /out of data bounds/);
  assert.match(failures[0]!.stack ?? "", /Error: indices element/);
  assert.deepEqual(m.engine.drainFailures(), [], "drained once");
});

test("a sequence whose sampling fails (NaN logits) fails alone, mid-batch, and frees its blocks", async () => {
  const clean = await cleanRun();
  const m = makeEngine();
  for (const r of CLEAN) m.engine.add(r);
  await m.engine.step();
  m.engine.add(request("nan", [9, 10, 11], { maxTokens: 8 })); // generates 12, whose logits are NaN
  await run(m.engine);
  const got = outcomes(m.events);
  assert.deepEqual(got["nan"], [12, "error:engine_error"]);
  for (const r of CLEAN) assert.deepEqual(got[r.id], clean[r.id], r.id);
  assert.equal(m.blocks.numUsedBlocks, 0);
  const errorEvent = m.events.find((e) => e.type === "error")!;
  assert.match(errorEvent.type === "error" ? errorEvent.message : "", /no finite logit/);
  assert.deepEqual(
    m.engine.drainFailures().map((f) => f.id),
    ["nan"],
  );
});

test("add refuses, alone and holding nothing, sampling values the samplers cannot use and prompts past the context", async () => {
  const m = makeEngine();
  m.engine.add(request("bad", [1, 2], { repetitionPenalty: 0 }));
  m.engine.add({ ...request("hot", [1, 2]), latent: { temperature: Infinity, returnVectors: false } });
  m.engine.add(
    request(
      "long",
      Array.from({ length: 64 }, () => 1),
    ),
  );
  m.engine.add(request("ok", [1, 2]));
  await run(m.engine);
  const got = outcomes(m.events);
  assert.deepEqual(got["bad"], ["error:invalid_request"]);
  assert.deepEqual(got["hot"], ["error:invalid_request"]);
  assert.deepEqual(got["long"], ["error:context_length_exceeded"]);
  assert.deepEqual(got["ok"], [3, 4, 5, 6, "finish:length"]);
  assert.equal(m.blocks.numUsedBlocks, 0);
});
