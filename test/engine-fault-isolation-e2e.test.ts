import { test } from "node:test";
import assert from "node:assert/strict";
import type { EngineLog } from "../src/engine/client.ts";
import type { GenerateRequest } from "../src/engine/types.ts";
import { collect, idleStats, manifest, request, startEngine, TEST_PROGRAMS, type Outcome } from "./helpers/engine.ts";

/** The real engine worker on the shipped model: poisoned requests injected into a running batch
 * fail alone, with an error-level log line naming them; the others finish exactly as in a clean
 * run, and no KV block leaks. The poisons are real inputs, no test hook: a token id past the
 * vocabulary makes onnxruntime's embedding Gather throw for the whole batch (the engine bisects),
 * and a latent temperature of 1e39 overflows a thought to Infinity (its sampling fails). */

const clean = (): GenerateRequest[] =>
  TEST_PROGRAMS.slice(0, 4).map((p, i) =>
    request(p.source, i % 2 ? "explicit" : "none", {}, { maxTokens: 96, ignoreEos: true }),
  );

test("poisoned requests injected into a running batch fail alone; the others match a clean run; no block leaks", {
  timeout: 120_000,
}, async () => {
  const logs: { level: string; message: string; fields: Record<string, unknown> }[] = [];
  const log: EngineLog = (level, message, fields = {}) => logs.push({ level, message, fields });
  const engine = await startEngine({ kvCacheBlocks: 128 }, log);
  try {
    const reference = await Promise.all(clean().map((r) => collect(engine.generate(r))));
    assert.ok(
      reference.every((r) => r.error === null && r.tokens.length === 96),
      "the clean run",
    );
    const tokensSeen: number[] = [0, 0, 0, 0];
    const running = clean().map(async (r, i) => {
      const o: Outcome = { tokens: [], text: "", thoughtLogProbs: [], finish: null, error: null };
      for await (const e of engine.generate(r)) {
        if (e.type === "token") {
          o.tokens.push(e.tokenId);
          tokensSeen[i]!++;
        } else if (e.type === "finish") o.finish = e;
        else if (e.type === "error") o.error = e.message;
      }
      return o;
    });
    while (tokensSeen.some((n) => n < 2)) await new Promise((r) => setTimeout(r, 2));
    const atInjection = [...tokensSeen];
    const base = request(TEST_PROGRAMS[5]!.source, "latent", {}, { maxTokens: 8 });
    const outOfVocab = {
      ...base,
      id: "poison-oov",
      promptIds: [...base.promptIds.slice(0, 3), manifest.architecture.vocab_size + 5, ...base.promptIds.slice(3)],
    };
    const overflow = { ...base, id: "poison-overflow", latent: { temperature: 1e39, returnVectors: false } };
    const [oov, ovf] = await Promise.all([collect(engine.generate(outOfVocab)), collect(engine.generate(overflow))]);
    const after = await Promise.all(running);

    assert.ok(
      atInjection.every((n) => n < 96),
      `the batch was running when the poisons came (${atInjection})`,
    );
    assert.match(oov.error ?? "", /engine failed this request: .*Gather/);
    assert.equal(oov.finish, null);
    assert.match(ovf.error ?? "", /engine failed this request: thought dimension \d+ is not finite/);
    after.forEach((o, i) => {
      assert.equal(o.error, null, `clean request ${i}`);
      assert.deepEqual(o.tokens, reference[i]!.tokens, `clean request ${i} equals its clean run`);
      assert.equal(o.finish?.reason, "length");
    });
    const s = await idleStats(engine);
    assert.equal(s.kvBlocksUsed, 0, "no KV block leaks");

    // The step failures are logged at error level with the request ids, never as load progress.
    const errors = logs.filter((l) => l.level === "error");
    const ids = errors.flatMap((l) => l.fields["requestIds"] as string[]);
    assert.deepEqual([...new Set(ids)].sort(), ["poison-oov", "poison-overflow"]);
    for (const l of errors) {
      assert.match(l.message, /engine step failed for \d+ request\(s\)/);
      assert.notEqual(l.fields["phase"], "load");
      assert.match(String((l.fields["err"] as { stack?: string }).stack), /Error/);
    }
  } finally {
    await engine.close();
  }
});
