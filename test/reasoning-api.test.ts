import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type OpenAI from "openai";
import { startServer, type TestServer } from "./helpers/server.ts";
import { sdkClient } from "./helpers/sdk.ts";

/** Reasoning the way OpenAI clients read it (the npm openai SDK against the shipped model): the
 * trace apart from the answer, reasoning tokens counted and inside the budget, greedy means one
 * answer. The shipped model declares its split: the explicit trace is every line but the last. */

const MODEL = "nfcot-trace-small";
const PROGRAM = "a = 5\nb = a * 3\nprint(b)";
const messages = [{ role: "user" as const, content: PROGRAM }];
const K = 6;

let s: TestServer;
let client: OpenAI;

before(async () => {
  s = await startServer();
  client = sdkClient(s.url);
});
after(() => s.close());

type Reasoned = { reasoning_content?: string | null; reasoning?: string | null };
type Thoughts = { thoughts: { count: number; decoded?: string } };

async function streamed(body: OpenAI.ChatCompletionCreateParamsStreaming) {
  const order: ("reasoning" | "content")[] = [];
  let reasoning = "";
  let content = "";
  let usage: OpenAI.CompletionUsage | undefined;
  const lpTokens: string[] = [];
  for await (const c of await client.chat.completions.create(body)) {
    if (c.usage) usage = c.usage;
    const d = c.choices[0]?.delta as (OpenAI.ChatCompletionChunk.Choice.Delta & Reasoned) | undefined;
    if (d?.reasoning_content) {
      reasoning += d.reasoning_content;
      assert.equal(d.reasoning, d.reasoning_content);
      if (order.at(-1) !== "reasoning") order.push("reasoning");
    }
    if (d?.content) {
      content += d.content;
      if (order.at(-1) !== "content") order.push("content");
    }
    for (const t of c.choices[0]?.logprobs?.content ?? []) lpTokens.push(t.token);
  }
  return { order, reasoning, content, usage, lpTokens };
}

describe("explicit mode: the trace in reasoning_content, the answer alone in content", () => {
  test("non-stream: the split, reasoning tokens, content logprobs that rebuild the content", async () => {
    const r = await client.chat.completions.create({
      model: MODEL,
      messages,
      temperature: 0,
      logprobs: true,
      // @ts-expect-error NF-CoT extension
      reasoning: { mode: "explicit" },
    });
    const m = r.choices[0]!.message as OpenAI.ChatCompletionMessage & Reasoned;
    assert.equal(m.content, "15");
    assert.equal(m.reasoning_content, "a = 5\nb = a * 3 = 5 * 3\nb = 15\n");
    assert.equal(m.reasoning, m.reasoning_content);
    // The word-level tokenizer: a = 5 \n b = a * 3 = 5 * 3 \n b = 15 \n is 18 tokens; then the
    // answer 15 (one token; the EOS that ends it is not counted).
    assert.equal(r.usage!.completion_tokens_details!.reasoning_tokens, 18);
    assert.equal(r.usage!.completion_tokens, 18 + 1);
    assert.equal(r.choices[0]!.logprobs!.content!.map((t) => t.token).join(""), "15");
  });

  test("stream: reasoning_content deltas come before content, and add up to the non-streamed reply", async () => {
    const out = await streamed({
      model: MODEL,
      messages,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
      logprobs: true,
      // @ts-expect-error NF-CoT extension
      reasoning: { mode: "explicit" },
    });
    assert.deepEqual(out.order, ["reasoning", "content"]);
    assert.equal(out.reasoning, "a = 5\nb = a * 3 = 5 * 3\nb = 15\n");
    assert.equal(out.content, "15");
    assert.equal(out.lpTokens.join(""), "15");
    assert.equal(out.usage!.completion_tokens_details!.reasoning_tokens, 18);
  });

  test("no reasoning split in none mode's one-line answer; reasoning_content is null", async () => {
    const r = await client.chat.completions.create({
      model: MODEL,
      messages,
      temperature: 0,
      // @ts-expect-error NF-CoT extension
      reasoning: { mode: "none" },
    });
    const m = r.choices[0]!.message as OpenAI.ChatCompletionMessage & Reasoned;
    assert.equal(m.reasoning_content, null);
    assert.match(m.content!, /^-?\d+$/);
    assert.equal(r.usage!.completion_tokens_details!.reasoning_tokens, 0);
  });
});

describe("latent mode", () => {
  test("return_thoughts: the decoded thoughts are the reasoning_content, streamed before the answer", async () => {
    const body = { model: MODEL, messages, temperature: 0, reasoning: { mode: "latent", return_thoughts: true } };
    const r = await client.chat.completions.create(body as OpenAI.ChatCompletionCreateParamsNonStreaming);
    const m = r.choices[0]!.message as OpenAI.ChatCompletionMessage & Reasoned;
    const thoughts = (r.choices[0] as unknown as Thoughts).thoughts;
    assert.equal(thoughts.count, K);
    assert.ok(thoughts.decoded && thoughts.decoded.length > 0);
    assert.equal(m.reasoning_content, thoughts.decoded);
    assert.equal(r.usage!.completion_tokens_details!.reasoning_tokens, K);
    const out = await streamed({ ...body, stream: true } as OpenAI.ChatCompletionCreateParamsStreaming);
    assert.deepEqual(out.order, ["reasoning", "content"]);
    assert.equal(out.reasoning, m.reasoning_content);
    assert.equal(out.content, m.content);
  });

  test("without return_thoughts there is no reasoning_content (the thoughts object keeps the densities)", async () => {
    const r = await client.chat.completions.create({ model: MODEL, messages, temperature: 0 });
    assert.equal((r.choices[0]!.message as Reasoned).reasoning_content, null);
    assert.equal((r.choices[0] as unknown as Thoughts).thoughts.count, K);
  });

  test("thoughts count toward max_completion_tokens: K is refused naming the minimum, K + 1 answers one token", async () => {
    await assert.rejects(
      client.chat.completions.create({ model: MODEL, messages, max_completion_tokens: K }),
      (e: InstanceType<typeof OpenAI.APIError>) => {
        assert.equal(e.status, 400);
        assert.equal(e.param, "max_completion_tokens");
        assert.match(e.message, /must be at least 7/);
        return true;
      },
    );
    await assert.rejects(
      client.chat.completions.create({ model: MODEL, messages, max_tokens: 1 }),
      (e: InstanceType<typeof OpenAI.APIError>) => e.param === "max_tokens",
    );
    const r = await client.chat.completions.create({
      model: MODEL,
      messages,
      max_completion_tokens: K + 1,
      temperature: 0,
    });
    assert.equal(r.usage!.completion_tokens, K + 1);
    assert.equal(r.usage!.completion_tokens_details!.reasoning_tokens, K);
    assert.equal(r.choices[0]!.finish_reason, "length");
    assert.match(r.choices[0]!.message.content!, /^-?\d+$/, "one answer token (the tokenizer's numbers are words)");
  });
});

test("temperature 0 means one answer: every mode, ten times, streamed and not", async () => {
  const program = "x = 7\ny = x - 9\nz = y * 2\nprint(z)";
  for (const mode of ["none", "explicit", "latent"]) {
    const answers = new Set<string>();
    for (let i = 0; i < 10; i++) {
      const body = {
        model: MODEL,
        messages: [{ role: "user", content: program }],
        temperature: 0,
        reasoning: { mode },
      };
      if (i % 2 === 0) {
        const r = await client.chat.completions.create(body as OpenAI.ChatCompletionCreateParamsNonStreaming);
        answers.add(r.choices[0]!.message.content!);
      } else {
        answers.add((await streamed({ ...body, stream: true } as OpenAI.ChatCompletionCreateParamsStreaming)).content);
      }
    }
    assert.equal(answers.size, 1, `${mode}: ${[...answers].join(" | ")}`);
  }
  // The rule is stated where clients look for model facts.
  const model = (await client.models.retrieve(MODEL)) as unknown as {
    nfcot: { greedy_latent_temperature: number; default_latent_temperature: number };
  };
  assert.equal(model.nfcot.greedy_latent_temperature, 0);
  assert.equal(model.nfcot.default_latent_temperature, 0.9);
});
