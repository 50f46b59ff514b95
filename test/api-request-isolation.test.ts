import assert from "node:assert/strict";
import { test } from "node:test";
import { startServer, waitFor } from "./helpers/server.ts";
import { postJson, readSse } from "./helpers/sse.ts";

/** The request: schema-valid sampling values that used to overflow the sampler to NaN,
 * fail with a 500 and take every stream in flight down with it. Now it is answered (the same
 * tokens for the same seed), and three innocent streams beside it end exactly as they do alone. */

const MODEL = "nfcot-trace-small";
const POISON = { top_p: 0, repetition_penalty: 1e-300, seed: 0, temperature: 1, max_tokens: 24 };

const innocent = (i: number) => ({
  model: MODEL,
  messages: [{ role: "user", content: `a = ${i + 2}\nb = a * 3\nprint(b)` }],
  temperature: 0,
  max_tokens: 48,
  ignore_eos: true,
  stream: true,
  reasoning: { mode: "explicit" },
});

async function stream(url: string, body: unknown): Promise<{ text: string; finish: string | null; error: unknown }> {
  const res = await postJson(`${url}/v1/chat/completions`, body);
  assert.equal(res.status, 200);
  const { chunks, done } = await readSse(res);
  const error = chunks.find((c) => c.error)?.error ?? null;
  assert.ok(done || error, "the stream ended with [DONE] or an error");
  return {
    text: chunks.map((c) => c.choices?.[0]?.delta?.content ?? "").join(""),
    finish: chunks.find((c) => c.choices?.[0]?.finish_reason)?.choices[0].finish_reason ?? null,
    error,
  };
}

test("top_p 0 with repetition_penalty 1e-300 is answered, and fails none of the streams beside it", {
  timeout: 120_000,
}, async () => {
  const s = await startServer();
  try {
    const alone: Awaited<ReturnType<typeof stream>>[] = [];
    for (let i = 0; i < 3; i++) alone.push(await stream(s.url, innocent(i)));
    const poisonBody = { model: MODEL, messages: [{ role: "user", content: "x = 5\nprint(x)" }], ...POISON };
    const [poisoned, ...together] = await Promise.all([
      postJson(`${s.url}/v1/chat/completions`, poisonBody),
      ...[0, 1, 2].map((i) => stream(s.url, innocent(i))),
    ]);
    assert.equal(poisoned.status, 200);
    const first = await poisoned.json();
    assert.ok(["stop", "length"].includes(first.choices[0].finish_reason));
    together.forEach((t, i) => {
      assert.equal(t.error, null, `stream ${i}`);
      assert.equal(t.finish, "length");
      assert.equal(t.text, alone[i]!.text, `stream ${i} equals its run alone`);
    });
    // Seeded: the same request gives the same answer.
    const again = await (await postJson(`${s.url}/v1/chat/completions`, poisonBody)).json();
    assert.equal(again.choices[0].message.content, first.choices[0].message.content);
    await waitFor(() => s.engine.inFlight === 0 && s.engine.stats!.kvBlocksUsed === 0, 5000, "every block free");
  } finally {
    await s.close();
  }
});
