import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startServer, type TestServer } from "./helpers/server.ts";
import { postJson, readSse } from "./helpers/sse.ts";

/** End to end over real HTTP against the real engine and the shipped model: response shapes,
 * thoughts, usage accounting, streaming, completions, models and the tokenizer routes. The model
 * is a placeholder, so these assert properties, never particular answers. */

const MODEL = "nfcot-trace-small";
const PROGRAM = "a = 5\nb = a * 3\nprint(b)";
const K = 6;
const D = 16;
const messages = [{ role: "user", content: PROGRAM }];

let s: TestServer;
const chat = (body: Record<string, unknown>) =>
  postJson(`${s.url}/v1/chat/completions`, { model: MODEL, messages, ...body });

before(async () => {
  s = await startServer();
});
after(() => s.close());

const decodeF32 = (b64: string) => {
  const buf = Buffer.from(b64, "base64");
  return Array.from({ length: buf.length / 4 }, (_, i) => buf.readFloatLE(i * 4));
};
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

describe("chat completions", () => {
  test("latent mode: shape, thoughts with vectors and decoded trace, usage counts thoughts", async () => {
    const res = await chat({
      max_tokens: 12,
      seed: 7,
      logprobs: true,
      top_logprobs: 2,
      reasoning: { return_thoughts: true },
    });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.match(body.id, /^chatcmpl-[A-Za-z0-9]{20,}$/);
    assert.equal(body.object, "chat.completion");
    assert.equal(body.model, MODEL);
    assert.equal(body.system_fingerprint, `nfcot-serve-${MODEL}`);
    assert.equal(body.choices.length, 1);
    const c = body.choices[0];
    assert.equal(c.index, 0);
    assert.equal(c.message.role, "assistant");
    assert.equal(typeof c.message.content, "string");
    assert.ok(["stop", "length"].includes(c.finish_reason));

    assert.equal(c.thoughts.count, K);
    assert.equal(c.thoughts.log_probs.length, K);
    assert.ok(c.thoughts.log_probs.every(Number.isFinite));
    assert.ok(Math.abs(c.thoughts.log_prob - sum(c.thoughts.log_probs)) < 1e-9);
    assert.equal(c.thoughts.vectors.length, K);
    for (const v of c.thoughts.vectors) {
      const xs = decodeF32(v);
      assert.equal(xs.length, D);
      assert.ok(xs.every(Number.isFinite));
    }
    assert.equal(typeof c.thoughts.decoded, "string");

    const tokens = c.logprobs.content;
    assert.ok(tokens.length >= 1 && tokens.length <= 12);
    for (const t of tokens) {
      assert.equal(typeof t.token, "string");
      assert.ok(t.logprob <= 0);
      assert.equal(t.top_logprobs.length, 2);
      assert.ok(t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob);
      assert.deepEqual(t.bytes, [...Buffer.from(t.token)]);
    }
    const prompt = await (await postJson(`${s.url}/tokenize`, { messages })).json();
    assert.deepEqual(body.usage, {
      prompt_tokens: prompt.count,
      completion_tokens: tokens.length + K,
      total_tokens: prompt.count + tokens.length + K,
      completion_tokens_details: { reasoning_tokens: K },
      prompt_tokens_details: { cached_tokens: body.usage.prompt_tokens_details.cached_tokens },
    });
  });

  test("the stream carries the same choice as the response, thought chunks, usage and [DONE]", async () => {
    const params = { max_tokens: 10, seed: 11, temperature: 0.8 };
    const whole = await (await chat(params)).json();
    const res = await chat({ ...params, stream: true, stream_options: { include_usage: true } });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
    const { chunks, done } = await readSse(res);
    assert.ok(done);
    assert.ok(chunks.every((c) => c.object === "chat.completion.chunk" && c.id === chunks[0].id && c.model === MODEL));
    assert.deepEqual(chunks[0].choices[0].delta, { role: "assistant", content: "" });
    const thoughtChunks = chunks.filter((c) => c.choices[0]?.thought);
    assert.deepEqual(
      thoughtChunks.map((c) => c.choices[0].thought.index),
      [0, 1, 2, 3, 4, 5],
    );
    assert.ok(
      thoughtChunks.every((c) => Object.keys(c.choices[0].delta).length === 0 && c.choices[0].finish_reason === null),
    );
    const content = chunks.map((c) => c.choices[0]?.delta?.content ?? "").join("");
    const last = [...chunks].reverse().find((c) => c.choices[0]?.finish_reason);
    const wc = whole.choices[0];
    assert.equal(content, wc.message.content);
    assert.equal(last.choices[0].finish_reason, wc.finish_reason);
    assert.deepEqual(last.choices[0].thoughts.log_probs, wc.thoughts.log_probs);
    assert.deepEqual(
      thoughtChunks.map((c) => c.choices[0].thought.log_prob),
      wc.thoughts.log_probs,
    );
    const usage = chunks.at(-1);
    assert.deepEqual(usage.choices, []);
    assert.equal(usage.usage.completion_tokens, whole.usage.completion_tokens);
    assert.equal(usage.usage.completion_tokens_details.reasoning_tokens, K);
    assert.ok(chunks.slice(0, -1).every((c) => c.usage === null));
  });

  test("without return_thoughts: no vectors, but the decoded trace (the model ships a decoder)", async () => {
    const body = await (await chat({ max_tokens: 10, seed: 2 })).json();
    const t = body.choices[0].thoughts;
    assert.equal(t.count, K);
    assert.equal(t.vectors, undefined);
    assert.equal(typeof t.decoded, "string");
    const { chunks } = await readSse(await chat({ max_tokens: 10, seed: 2, stream: true }));
    const last = chunks.find((c) => c.choices[0]?.finish_reason);
    assert.equal(last.choices[0].thoughts.decoded, t.decoded);
    assert.ok(chunks.every((c) => c.choices[0]?.thought?.vector === undefined));
  });

  test("modes none and explicit sample no thoughts", async () => {
    for (const mode of ["none", "explicit"]) {
      const body = await (await chat({ max_tokens: 8, seed: 1, reasoning: { mode } })).json();
      assert.equal(body.choices[0].thoughts.count, 0, mode);
      assert.deepEqual(body.choices[0].thoughts.log_probs, []);
      assert.equal(body.choices[0].thoughts.decoded, undefined);
      // A written trace's tokens are reasoning tokens (seed 1: four before the first line ends).
      assert.equal(body.usage.completion_tokens_details.reasoning_tokens, mode === "none" ? 0 : 4);
    }
  });

  test("greedy text and latent_temperature 0 make the answer independent of the seed", async () => {
    const a = await (
      await chat({ max_tokens: 8, seed: 1, temperature: 0, reasoning: { latent_temperature: 0 } })
    ).json();
    const b = await (
      await chat({ max_tokens: 8, seed: 99, temperature: 0, reasoning: { latent_temperature: 0 } })
    ).json();
    assert.equal(a.choices[0].message.content, b.choices[0].message.content);
    assert.deepEqual(a.choices[0].thoughts.log_probs, b.choices[0].thoughts.log_probs);
  });

  test("stop strings never appear in the content", async () => {
    const body = await (await chat({ max_tokens: 12, seed: 3, stop: ["\n", "="] })).json();
    assert.ok(!/[\n=]/.test(body.choices[0].message.content), body.choices[0].message.content);
  });
});

describe("completions", () => {
  const complete = (body: Record<string, unknown>) => postJson(`${s.url}/v1/completions`, { model: MODEL, ...body });

  test("a list of prompts with n = 2: one choice per prompt and n, prompts counted once", async () => {
    const res = await complete({ prompt: ["a = 5", "b = 2\nprint(b)"], n: 2, max_tokens: 4, seed: 5 });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.match(body.id, /^cmpl-/);
    assert.equal(body.object, "text_completion");
    assert.deepEqual(
      body.choices.map((c: any) => c.index),
      [0, 1, 2, 3],
    );
    const counts = await Promise.all(
      ["a = 5", "b = 2\nprint(b)"].map(
        async (prompt) => (await (await postJson(`${s.url}/tokenize`, { prompt })).json()).count,
      ),
    );
    assert.equal(body.usage.prompt_tokens, counts[0] + counts[1]);
    assert.ok(body.choices.every((c: any) => c.thoughts.count === 0 && typeof c.text === "string"));
  });

  test("echo with max_tokens 0 scores the prompt itself", async () => {
    const body = await (await complete({ prompt: "a = 5\nprint(a)", echo: true, max_tokens: 0, logprobs: 1 })).json();
    const c = body.choices[0];
    assert.equal(c.text, "a = 5\nprint(a)");
    assert.equal(c.finish_reason, "length");
    assert.equal(c.logprobs.token_logprobs[0], null);
    assert.equal(c.logprobs.tokens.length, 8);
    assert.ok(c.logprobs.token_logprobs.slice(1).every((x: number) => x < 0 && Number.isFinite(x)));
    assert.equal(body.usage.completion_tokens, 0);
  });

  test("a token-id prompt ending in <bot> is the chat prompt: same answer and thoughts as chat", async () => {
    const { tokens } = await (await postJson(`${s.url}/tokenize`, { messages })).json();
    assert.equal(tokens.at(-1), 4);
    const params = { max_tokens: 8, seed: 21, temperature: 1 };
    const viaChat = await (await chat(params)).json();
    const viaText = await (await complete({ ...params, prompt: tokens })).json();
    assert.equal(viaText.choices[0].text, viaChat.choices[0].message.content);
    assert.deepEqual(viaText.choices[0].thoughts.log_probs, viaChat.choices[0].thoughts.log_probs);
  });

  test("streamed completions end with [DONE] and carry text chunks", async () => {
    const { chunks, done } = await readSse(await complete({ prompt: "a = 5", max_tokens: 3, stream: true, seed: 1 }));
    assert.ok(done);
    assert.ok(chunks.every((c) => c.object === "text_completion"));
    assert.ok(chunks.at(-1).choices[0].finish_reason);
  });
});

describe("models and tokenizer", () => {
  test("GET /v1/models lists the served model with its NF-CoT facts", async () => {
    const body = await (await fetch(`${s.url}/v1/models`)).json();
    assert.equal(body.object, "list");
    assert.equal(body.data.length, 1);
    const m = body.data[0];
    assert.equal(m.id, MODEL);
    assert.equal(m.object, "model");
    assert.equal(m.max_model_len, 256);
    assert.equal(m.nfcot.num_thoughts, K);
    assert.equal(m.nfcot.thought_dim, D);
    assert.equal(m.nfcot.default_reasoning_mode, "latent");
    const one = await (await fetch(`${s.url}/v1/models/${MODEL}`)).json();
    assert.deepEqual(one, m);
  });

  test("tokenize and detokenize round-trip the chat prompt", async () => {
    const t = await (await postJson(`${s.url}/tokenize`, { messages, return_token_strs: true })).json();
    assert.equal(t.count, t.tokens.length);
    assert.equal(t.token_strs.at(-1), "<bot>");
    const { prompt } = await (await postJson(`${s.url}/detokenize`, { tokens: t.tokens })).json();
    const again = await (await postJson(`${s.url}/tokenize`, { prompt })).json();
    assert.deepEqual(again.tokens, t.tokens);
  });
});
