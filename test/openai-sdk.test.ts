import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import { startAppOn, startServer, type TestServer } from "./helpers/server.ts";
import { sdkClient } from "./helpers/sdk.ts";

/** The official openai npm SDK (v4) against a running server on the shipped model. */

const MODEL = "nfcot-trace-small";
const messages = [{ role: "user" as const, content: "a = 2\nb = a + 5\nprint(b)" }];

let s: TestServer;
let client: OpenAI;

before(async () => {
  s = await startServer();
  client = sdkClient(s.url);
});
after(() => s.close());

describe("chat completions through the SDK", () => {
  test("non-stream: typed fields and the thoughts extension", async () => {
    const r = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 8, seed: 3 });
    assert.equal(r.object, "chat.completion");
    assert.equal(r.model, MODEL);
    assert.equal(r.choices.length, 1);
    assert.equal(r.choices[0]!.message.role, "assistant");
    assert.equal(typeof r.choices[0]!.message.content, "string");
    const thoughts = (r.choices[0] as unknown as { thoughts: { count: number; log_probs: number[] } }).thoughts;
    assert.equal(thoughts.count, 6);
    assert.equal(r.usage!.completion_tokens_details!.reasoning_tokens, 6);
    assert.equal(r.usage!.total_tokens, r.usage!.prompt_tokens + r.usage!.completion_tokens);
  });

  test("stream with include_usage: content, thought chunks passed through, usage last", async () => {
    const whole = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 8, seed: 4 });
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages,
      max_tokens: 8,
      seed: 4,
      stream: true,
      stream_options: { include_usage: true },
    });
    let content = "";
    let thoughtChunks = 0;
    let usage: OpenAI.CompletionUsage | null | undefined;
    let finish: string | null = null;
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      if (c) {
        content += c.delta.content ?? "";
        if ((c as unknown as { thought?: unknown }).thought) thoughtChunks++;
        finish = c.finish_reason ?? finish;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    assert.equal(content, whole.choices[0]!.message.content);
    assert.equal(finish, whole.choices[0]!.finish_reason);
    assert.equal(thoughtChunks, 6);
    assert.equal(usage!.completion_tokens, whole.usage!.completion_tokens);
    assert.equal(usage!.completion_tokens_details!.reasoning_tokens, 6);
  });

  test("the SDK's stream helper accumulates the same message and does not choke on thought chunks", async () => {
    const whole = await client.chat.completions.create({
      model: MODEL,
      messages,
      max_tokens: 8,
      seed: 5,
      logprobs: true,
    });
    const runner = client.beta.chat.completions.stream({
      model: MODEL,
      messages,
      max_tokens: 8,
      seed: 5,
      logprobs: true,
    });
    let deltas = "";
    runner.on("content", (delta) => (deltas += delta));
    const final = await runner.finalChatCompletion();
    const choice = final.choices[0]!;
    assert.equal(choice.message.content, whole.choices[0]!.message.content);
    assert.equal(deltas, whole.choices[0]!.message.content);
    assert.equal(choice.finish_reason, whole.choices[0]!.finish_reason);
    assert.deepEqual(
      choice.logprobs!.content!.map((t) => t.logprob),
      whole.choices[0]!.logprobs!.content!.map((t) => t.logprob),
    );
    const thoughts = (choice as unknown as { thoughts: { log_probs: number[] } }).thoughts;
    assert.deepEqual(
      thoughts.log_probs,
      (whole.choices[0] as unknown as { thoughts: { log_probs: number[] } }).thoughts.log_probs,
    );
  });

  test("n = 3 with a seed gives the same three choices twice, and they differ from each other", async () => {
    const ask = () =>
      client.chat.completions.create({ model: MODEL, messages, n: 3, seed: 42, max_tokens: 8, temperature: 1 });
    const [a, b] = [await ask(), await ask()];
    const view = (r: OpenAI.ChatCompletion) =>
      r.choices.map((c) => ({
        index: c.index,
        content: c.message.content,
        finish: c.finish_reason,
        thoughts: (c as any).thoughts.log_probs,
      }));
    assert.deepEqual(
      a.choices.map((c) => c.index),
      [0, 1, 2],
    );
    assert.deepEqual(view(a), view(b));
    // Seeds seed + i: the three sampled latent trajectories are not copies of each other.
    assert.equal(new Set(view(a).map((c) => JSON.stringify(c.thoughts))).size, 3);
  });

  test("logprobs with top_logprobs", async () => {
    const r = await client.chat.completions.create({
      model: MODEL,
      messages,
      max_tokens: 12,
      seed: 1,
      logprobs: true,
      top_logprobs: 3,
    });
    const content = r.choices[0]!.logprobs!.content!;
    assert.ok(content.length >= 1);
    for (const t of content) {
      assert.ok(t.logprob <= 0);
      assert.equal(t.top_logprobs.length, 3);
      assert.ok(t.top_logprobs.some((x) => x.token === t.token) || t.logprob <= t.top_logprobs[2]!.logprob);
    }
  });
});

describe("other routes through the SDK", () => {
  test("completions", async () => {
    const r = await client.completions.create({
      model: MODEL,
      prompt: "a = 5\nprint(a)",
      max_tokens: 4,
      seed: 2,
      echo: true,
    });
    assert.equal(r.object, "text_completion");
    assert.ok(r.choices[0]!.text.startsWith("a = 5\nprint(a)"));
    assert.ok(["stop", "length"].includes(r.choices[0]!.finish_reason));
    assert.ok(r.usage!.prompt_tokens > 0);
  });

  test("models list and retrieve", async () => {
    const ids: string[] = [];
    for await (const m of client.models.list()) ids.push(m.id);
    assert.deepEqual(ids, [MODEL]);
    const m = await client.models.retrieve(MODEL);
    assert.equal(m.id, MODEL);
    assert.equal(m.object, "model");
  });
});

describe("errors raise the SDK's typed errors", () => {
  test("400 BadRequestError with param and code", async () => {
    await assert.rejects(client.chat.completions.create({ model: MODEL, messages, n: 100 }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.BadRequestError);
      assert.equal(e.status, 400);
      assert.equal(e.param, "n");
      assert.equal(e.code, "invalid_request");
      return true;
    });
    await assert.rejects(client.chat.completions.create({ model: MODEL, messages, max_tokens: 5000 }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.BadRequestError);
      assert.equal(e.code, "context_length_exceeded");
      assert.match(e.message, /maximum context length is 256/);
      return true;
    });
  });

  test("404 NotFoundError for an unknown model", async () => {
    await assert.rejects(client.chat.completions.create({ model: "gpt-4o", messages }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.NotFoundError);
      assert.equal(e.code, "model_not_found");
      assert.equal(e.param, "model");
      return true;
    });
  });

  test("401 AuthenticationError when the server has keys", async () => {
    const keyed = await startAppOn(s.engine, { apiKeys: ["sk-right"] });
    try {
      const wrong = new OpenAI({ baseURL: `${keyed.url}/v1`, apiKey: "sk-wrong", maxRetries: 0 });
      await assert.rejects(wrong.models.list(), (e: unknown) => {
        assert.ok(e instanceof OpenAI.AuthenticationError);
        assert.equal(e.code, "invalid_api_key");
        return true;
      });
      const right = new OpenAI({ baseURL: `${keyed.url}/v1`, apiKey: "sk-right", maxRetries: 0 });
      assert.equal((await right.models.retrieve(MODEL)).id, MODEL);
    } finally {
      await keyed.close();
    }
  });

  test("429 RateLimitError with Retry-After when the queue is full", async () => {
    const small = await startAppOn(s.engine, { maxQueue: 3 });
    const busy = new AbortController();
    try {
      // Two long sequences in flight, then two more asked for: 2 + 2 > 3.
      const body = { model: MODEL, messages, n: 2, max_tokens: 200, ignore_eos: true, stream: true };
      const first = await fetch(`${small.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
        signal: busy.signal,
      });
      assert.equal(first.status, 200);
      assert.equal(s.engine.inFlight, 2);
      const c = new OpenAI({ baseURL: `${small.url}/v1`, apiKey: "x", maxRetries: 0 });
      await assert.rejects(c.chat.completions.create({ model: MODEL, messages, n: 2, max_tokens: 8 }), (e: unknown) => {
        assert.ok(e instanceof OpenAI.RateLimitError);
        assert.equal(e.code, "queue_full");
        assert.equal(e.headers?.["retry-after"], "1");
        return true;
      });
    } finally {
      busy.abort();
      await small.close();
    }
  });

  test("an error after the stream started (a request timeout) is thrown by the SDK's iterator", async () => {
    const slow = await startAppOn(s.engine, { requestTimeoutMs: 100 });
    try {
      const c = new OpenAI({ baseURL: `${slow.url}/v1`, apiKey: "x", maxRetries: 0 });
      // 220 tokens past EOS take far longer than 100 ms on this machine.
      const body = { model: MODEL, messages, max_tokens: 220, ignore_eos: true, stream: true as const };
      const stream = await c.chat.completions.create(body as OpenAI.ChatCompletionCreateParamsStreaming);
      let chunks = 0;
      await assert.rejects(
        (async () => {
          for await (const _ of stream) chunks++;
        })(),
        (e: unknown) => {
          assert.ok(e instanceof OpenAI.APIError);
          assert.equal(e.code, "request_timeout");
          return true;
        },
      );
      assert.ok(chunks >= 1); // the error came after the headers and the first chunks
    } finally {
      await slow.close();
    }
  });
});
