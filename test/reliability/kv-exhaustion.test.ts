import assert from "node:assert/strict";
import { test } from "node:test";
import { Agent } from "undici";
import { streamChatCompletion, type StreamOutcome } from "../../bench/lib/sse-client.ts";
import { loadTestSplit } from "../../bench/lib/test-split.ts";
import { startServer, waitFor, type TestServer } from "../helpers/server.ts";
import { report, scaled } from "./helpers/scale.ts";
import { ServerWatch } from "./helpers/server-watch.ts";

/** KV exhaustion: a pool of a few blocks of 4 positions, far too small for the long requests
 * sent to it at once. Every request still completes, through queueing and preemption by
 * recompute, with exactly the greedy output it has on a big pool. */

const REQUESTS = scaled(8, 24);
const BLOCK = 4;
/** Each request needs up to ~200 positions (50 blocks); the pool holds one such at a time, and
 * a second only partly. */
const POOL_BLOCKS = 64;

/** Long prompts: programs in the task's vocabulary of up to 20 statements (about 125 tokens),
 * and the longest programs of the test split. */
function longProgram(lines: number, salt: number): string {
  const names = "abcdefghijklmnopqrstuvwxyz";
  const out = [`${names[salt % 26]} = ${1 + (salt % 9)}`];
  for (let i = 1; i < lines; i++)
    out.push(`${names[(salt + i) % 26]} = ${names[(salt + i - 1) % 26]} + ${1 + ((i * 7 + salt) % 9)}`);
  out.push(`print(${names[(salt + lines - 1) % 26]})`);
  return out.join("\n");
}
const longest = loadTestSplit()
  .filter((p) => p.n === 6)
  .slice(0, REQUESTS);
const prompts = Array.from({ length: REQUESTS }, (_, i) =>
  i % 2 === 0 ? longProgram(12 + (i % 8), i) : longest[i]!.source,
);
const MODES = ["explicit", "latent", "none"] as const;
const bodyOf = (i: number) => ({
  model: "nfcot-trace-small",
  messages: [{ role: "user", content: prompts[i]! }],
  temperature: 0,
  max_tokens: 60,
  ignore_eos: true, // a fixed length, so every request holds its blocks to the end
  reasoning: { mode: MODES[i % MODES.length], latent_temperature: 0 },
});

async function runAll(s: TestServer, concurrent: boolean): Promise<StreamOutcome[]> {
  const agent = new Agent({ connections: REQUESTS, keepAliveTimeout: 10_000 });
  try {
    if (concurrent)
      return await Promise.all(prompts.map((_, i) => streamChatCompletion(s.url, bodyOf(i), { dispatcher: agent })));
    const out: StreamOutcome[] = [];
    for (let i = 0; i < prompts.length; i++)
      out.push(await streamChatCompletion(s.url, bodyOf(i), { dispatcher: agent }));
    return out;
  } finally {
    await agent.close();
  }
}

test("a tiny KV pool and long prompts: every request completes with its big-pool greedy output", {
  timeout: 300_000,
}, async (t) => {
  const big = await startServer({ kvCacheBlocks: 512 });
  let reference: StreamOutcome[];
  try {
    reference = await runAll(big, false);
  } finally {
    await big.close();
  }
  assert.ok(
    reference.every((r) => r.ok),
    "the reference run succeeds",
  );
  const maxPositions = Math.max(...reference.map((r) => r.usage!.prompt_tokens + r.usage!.completion_tokens));
  assert.ok(maxPositions <= POOL_BLOCKS * BLOCK, `each request fits the tiny pool alone (${maxPositions} positions)`);
  const demand = reference.reduce(
    (n, r) => n + Math.ceil((r.usage!.prompt_tokens + r.usage!.completion_tokens) / BLOCK),
    0,
  );

  const tiny = await startServer({ kvCacheBlocks: POOL_BLOCKS, blockSize: BLOCK, maxNumSeqs: REQUESTS });
  const watch = new ServerWatch(tiny.app.server);
  try {
    const t0 = performance.now();
    const results = await runAll(tiny, true);
    const seconds = (performance.now() - t0) / 1000;
    await waitFor(
      () => {
        const st = tiny.engine.stats;
        return st !== null && st.kvBlocksUsed === 0 && st.running === 0 && st.waiting === 0;
      },
      30_000,
      "the tiny pool drained",
    );
    const stats = tiny.engine.stats!;
    const wrong = results.filter(
      (r, i) =>
        !r.ok || r.text !== reference[i]!.text || r.usage?.completion_tokens !== reference[i]!.usage?.completion_tokens,
    );
    report(t, "KV exhaustion", {
      requests: REQUESTS,
      "pool blocks": POOL_BLOCKS,
      "block size": BLOCK,
      "blocks wanted at once": demand,
      "longest request (positions)": maxPositions,
      completed: results.filter((r) => r.ok).length,
      "equal to the big-pool output": REQUESTS - wrong.length,
      preemptions: stats.preemptions,
      "kv blocks used after": stats.kvBlocksUsed,
      "server 5xx": watch.serverErrors,
      seconds,
    });
    assert.ok(demand > 2 * POOL_BLOCKS, "the requests want far more blocks than the pool has");
    assert.deepEqual(
      wrong.map(
        (r) =>
          `#${results.indexOf(r)}: ${r.error ?? ""} ${JSON.stringify(r.text).slice(0, 80)} vs ${JSON.stringify(reference[results.indexOf(r)]!.text).slice(0, 80)}`,
      ),
      [],
      "every request completes with the big pool's greedy output",
    );
    assert.ok(stats.preemptions > 0, "the pool ran out: sequences were preempted and recomputed");
    assert.equal(watch.serverErrors, 0);
    assert.deepEqual(watch.rejections.map(String), []);
  } finally {
    watch.stop();
    await tiny.close();
  }
});
