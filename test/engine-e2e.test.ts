import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import type { EngineClient } from "../src/engine/client.ts";
import { collect, idleStats, manifest, request, startEngine, TEST_PROGRAMS } from "./helpers/engine.ts";

// End to end on the shipped model through the real worker thread and onnxruntime.
const programs = TEST_PROGRAMS.filter((p) => p.n >= 3).slice(0, 16);
let engine: EngineClient;
let alone: string[] = [];
const reqs = () =>
  programs.map((p, i) => request(p.source, i % 2 ? "explicit" : "latent", {}, { maxTokens: 40, seed: 100 + i }));

before(async () => {
  engine = await startEngine({ enablePrefixCaching: false });
  alone = [];
  for (const r of reqs()) alone.push(JSON.stringify(await collect(engine.generate(r))));
});
after(async () => engine.close());

test("greedy outputs are the same alone and in a batch of 16 different prompts", async () => {
  const batched = await Promise.all(reqs().map((r) => collect(engine.generate(r))));
  const parsed = alone.map((a) => JSON.parse(a));
  batched.forEach((b, i) => {
    assert.equal(b.error, null);
    assert.deepEqual(b.tokens, parsed[i].tokens, `prompt ${i}`);
    assert.equal(b.finish?.reason, parsed[i].finish.reason);
    if (i % 2 === 0) assert.equal(b.thoughtLogProbs.length, manifest.latent!.num_thoughts);
  });
  // Seeded latent thoughts are per request, whatever shares the batch.
  batched.forEach((b, i) => {
    b.thoughtLogProbs.forEach((lp, k) => assert.ok(Math.abs(lp - parsed[i].thoughtLogProbs[k]) < 1e-3));
  });
  assert.equal((await idleStats(engine)).kvBlocksUsed, 0);
});

test("a prefix-cache hit gives the same output as a miss", async () => {
  const cached = await startEngine({ enablePrefixCaching: true, blockSize: 4 });
  try {
    const p = programs[3]!;
    const first = await collect(cached.generate(request(p.source, "explicit", {}, { maxTokens: 40 })));
    const second = await collect(cached.generate(request(p.source, "explicit", {}, { maxTokens: 40 })));
    assert.equal(first.finish!.cachedTokens, 0);
    assert.ok(second.finish!.cachedTokens >= 4, `cached ${second.finish!.cachedTokens}`);
    assert.deepEqual(second.tokens, first.tokens);
    assert.deepEqual(second.tokens, JSON.parse(alone[3]!).tokens);
    const s = await idleStats(cached);
    assert.ok(s.prefixCacheHits > 0 && s.prefixCacheHits < s.prefixCacheQueries);
    assert.equal(s.kvBlocksUsed, 0);
  } finally {
    await cached.close();
  }
});

test("with a pool too small for all requests every request finishes with the right output", async () => {
  // 12 blocks of 8 positions: one sequence fits, 16 at once do not.
  const small = await startEngine({ kvCacheBlocks: 12, blockSize: 8, enablePrefixCaching: false });
  try {
    const out = await Promise.all(reqs().map((r) => collect(small.generate(r))));
    const parsed = alone.map((a) => JSON.parse(a));
    out.forEach((o, i) => {
      assert.equal(o.error, null);
      assert.deepEqual(o.tokens, parsed[i].tokens, `prompt ${i}`);
    });
    const s = await idleStats(small);
    assert.ok(s.preemptions > 0, "the pool was meant to force preemption");
    assert.equal(s.kvBlocksUsed, 0);
  } finally {
    await small.close();
  }
});

test("after requests finish or abort, every block is free again", async () => {
  const rs = reqs();
  const out = await Promise.all(rs.map((r, i) => collect(engine.generate(r), i % 3 === 0 ? 2 : Infinity)));
  const parsed = alone.map((a) => JSON.parse(a));
  out.forEach((o, i) => {
    if (i % 3 === 0) assert.equal(o.tokens.length, Math.min(2, parsed[i].tokens.length));
    else assert.deepEqual(o.tokens, parsed[i].tokens);
  });
  const s = await idleStats(engine);
  assert.equal(s.kvBlocksUsed, 0);
  assert.equal(s.running, 0);
});

test("a request the pool can never hold gets an error and the engine goes on", async () => {
  const tiny = await startEngine({ kvCacheBlocks: 2, blockSize: 4 });
  try {
    const o = await collect(tiny.generate(request(programs[0]!.source, "none")));
    assert.match(o.error ?? "", /KV cache holds 8/);
    const s = await idleStats(tiny);
    assert.equal(s.kvBlocksUsed, 0);
  } finally {
    await tiny.close();
  }
});
