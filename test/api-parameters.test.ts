import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import { startAppOn, startServer, type TestServer } from "./helpers/server.ts";
import { SHIPPED_MODEL } from "./helpers/python.ts";
import { sdkClient } from "./helpers/sdk.ts";

/** Parameters done or refused (#18), through the official openai npm SDK against the real
 * server on the shipped model: logit_bias, min_tokens, stop_token_ids, prompt_logprobs, the
 * refused ones (400 unsupported_parameter naming the parameter), ignored unknown fields, and
 * logprob tokens that rebuild the returned text. */

const MODEL = "nfcot-trace-small";
const messages = [{ role: "user" as const, content: "a = 5\nb = a * 3\nprint(b)" }];
const explicit = { reasoning: { mode: "explicit" } };
/** The NF-CoT and vLLM extensions ride in the body as the SDK passes them: typed loosely. */
type Body = OpenAI.ChatCompletionCreateParamsNonStreaming & Record<string, unknown>;

let s: TestServer;
let client: OpenAI;
const chat = (body: Record<string, unknown>) =>
  client.chat.completions.create({ model: MODEL, messages, ...body } as Body);
const complete = (body: Record<string, unknown>) =>
  client.completions.create({ model: MODEL, ...body } as OpenAI.CompletionCreateParamsNonStreaming);

before(async () => {
  s = await startServer();
  client = sdkClient(s.url);
});
after(() => s.close());

/** A chat reply's whole text: the trace split off as reasoning, then the answer. */
const replyText = (r: OpenAI.ChatCompletion) => {
  const m = r.choices[0]!.message as OpenAI.ChatCompletionMessage & { reasoning_content?: string | null };
  return (m.reasoning_content ?? "") + m.content!;
};

async function refused(p: Promise<unknown>, param: string, code = "unsupported_parameter") {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof OpenAI.BadRequestError, String(e));
    assert.equal(e.status, 400);
    assert.equal(e.code, code);
    assert.equal(e.param, param);
    return true;
  });
}

describe("refused with 400 unsupported_parameter", () => {
  test("chat.completions.parse with a json_schema response_format (and json_object)", async () => {
    const response_format = {
      type: "json_schema" as const,
      json_schema: {
        name: "answer",
        strict: true,
        schema: {
          type: "object",
          properties: { b: { type: "integer" } },
          required: ["b"],
          additionalProperties: false,
        },
      },
    };
    await refused(client.beta.chat.completions.parse({ model: MODEL, messages, response_format }), "response_format");
    await refused(chat({ response_format: { type: "json_object" } }), "response_format");
    const text = await chat({ response_format: { type: "text" }, max_tokens: 8 });
    assert.equal(text.choices.length, 1);
  });

  test("tools, tool_choice and the legacy functions on a model whose template does not read tools", async () => {
    const tools = [
      { type: "function" as const, function: { name: "add", parameters: { type: "object", properties: {} } } },
    ];
    await refused(chat({ tools }), "tools");
    await refused(chat({ tool_choice: "required" }), "tool_choice");
    await refused(chat({ functions: [{ name: "add" }] }), "functions");
  });

  test("stream_options without stream: true; prompt_logprobs with stream: true", async () => {
    await refused(chat({ stream_options: { include_usage: true } }), "stream_options");
    await refused(complete({ prompt: "a = 1\nprint(a)", stream_options: { include_usage: true } }), "stream_options");
    await refused(
      client.chat.completions.create({ model: MODEL, messages, stream: true, prompt_logprobs: 1 } as never),
      "prompt_logprobs",
    );
  });

  test("/v1/completions: reasoning.mode (the prompt sets the mode); the latent options are honoured", async () => {
    await refused(complete({ prompt: "a = 1\nprint(a)", reasoning: { mode: "latent" } }), "reasoning.mode");
    // A prompt ending in <bot> opens a span: latent_temperature 0 and return_thoughts apply.
    const r = await complete({
      prompt: "<s><|user|>\na = 1\nprint(a)\n<|assistant|><|latent|><bot>",
      max_tokens: 9,
      temperature: 0,
      reasoning: { latent_temperature: 0, return_thoughts: true },
    });
    const thoughts = (
      r.choices[0] as unknown as {
        thoughts: { count: number; temperature: number; vectors: string[]; behaviour_log_prob: number | null };
      }
    ).thoughts;
    assert.equal(thoughts.count, 6);
    assert.equal(thoughts.temperature, 0);
    assert.equal(thoughts.vectors.length, 6);
    assert.equal(thoughts.behaviour_log_prob, null);
  });

  test("bad values are invalid_request: logit_bias out of range or vocabulary, min_tokens over max_tokens", async () => {
    await refused(chat({ logit_bias: { "21": 101 } }), "logit_bias[21]", "invalid_request");
    await refused(chat({ logit_bias: { "246": 1 } }), "logit_bias", "invalid_request");
    await refused(chat({ logit_bias: { a: 1 } }), "logit_bias", "invalid_request");
    await refused(chat({ min_tokens: 9, max_tokens: 8 }), "min_tokens", "invalid_request");
  });
});

describe("done", () => {
  test("logit_bias: -100 on the greedy token changes it; the reported logprob is the model's own", async () => {
    const plain = await chat({ ...explicit, temperature: 0, max_tokens: 3, logprobs: true, top_logprobs: 5 });
    const first = plain.choices[0]!.logprobs!.content![0]!;
    assert.equal(first.token, "a");
    const biased = await chat({
      ...explicit,
      temperature: 0,
      max_tokens: 3,
      logprobs: true,
      logit_bias: { "21": -100 },
    });
    const b0 = biased.choices[0]!.logprobs!.content![0]!;
    assert.notEqual(b0.token, "a");
    const raw = first.top_logprobs.find((t) => t.token === b0.token);
    assert.ok(raw, `${b0.token} among the unbiased top 5`);
    // The same number up to float rounding: the second request's prompt comes from the prefix cache.
    assert.ok(Math.abs(b0.logprob - raw.logprob) < 1e-5, `${b0.logprob} vs ${raw.logprob}`);
    const pushed = await chat({ ...explicit, temperature: 0, max_tokens: 1, logit_bias: { "22": 100 } });
    assert.equal(pushed.choices[0]!.message.content, "b");
  });

  test("min_tokens: EOS cannot end the choice before it", async () => {
    const plain = await chat({ ...explicit, temperature: 0 });
    assert.equal(plain.choices[0]!.finish_reason, "stop");
    const n = plain.usage!.completion_tokens;
    const longer = await chat({ ...explicit, temperature: 0, min_tokens: n + 4, max_tokens: n + 30 });
    assert.ok(longer.usage!.completion_tokens >= n + 4, `${longer.usage!.completion_tokens} >= ${n + 4}`);
    // The whole reply (trace, then answer) goes on where the plain one stopped.
    assert.ok(replyText(longer).startsWith(replyText(plain)), `${replyText(longer)} | ${replyText(plain)}`);
  });

  test("stop_token_ids end the choice (finish stop, the token not in the content); min_tokens holds them off", async () => {
    const plain = await chat({ ...explicit, temperature: 0 });
    const firstLine = replyText(plain).split("\n")[0]!;
    const r = await chat({ ...explicit, temperature: 0, stop_token_ids: [11] });
    assert.equal(r.choices[0]!.message.content, firstLine);
    assert.equal(r.choices[0]!.finish_reason, "stop");
    const held = await chat({ ...explicit, temperature: 0, stop_token_ids: [11], min_tokens: 6, max_tokens: 12 });
    assert.ok(held.usage!.completion_tokens >= 6);
    assert.ok(!replyText(held).includes("\n"), replyText(held));
  });

  test("prompt_logprobs (vLLM's shape) on chat and completions, equal to echo's prompt logprobs", async () => {
    const c = (await chat({ max_tokens: 7, prompt_logprobs: 2 })) as unknown as {
      prompt_logprobs: (Record<string, { logprob: number; rank: number; decoded_token: string }> | null)[];
      usage: { prompt_tokens: number };
    };
    assert.equal(c.prompt_logprobs.length, c.usage.prompt_tokens);
    assert.equal(c.prompt_logprobs[0], null);
    for (const pos of c.prompt_logprobs.slice(1)) {
      const entries = Object.values(pos!);
      assert.ok(entries.length === 2 || entries.length === 3);
      assert.ok(entries.some((e) => e.rank === 1));
      for (const e of entries) assert.ok(e.rank >= 1 && e.logprob <= 0 && typeof e.decoded_token === "string");
    }
    const prompt = "a = 1\nprint(a)";
    const r = await complete({ prompt, max_tokens: 2, temperature: 0, echo: true, logprobs: 1, prompt_logprobs: 0 });
    const choice = r.choices[0] as unknown as {
      prompt_logprobs: (Record<string, { logprob: number; rank: number }> | null)[];
      logprobs: { token_logprobs: (number | null)[] };
    };
    const ids = (
      await (
        await fetch(`${s.url}/tokenize`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ model: MODEL, prompt }),
        })
      ).json()
    ).tokens as number[];
    assert.equal(choice.prompt_logprobs.length, ids.length);
    ids.forEach((id, i) => {
      if (i === 0) return assert.equal(choice.prompt_logprobs[0], null);
      const pos = choice.prompt_logprobs[i]!;
      assert.deepEqual(Object.keys(pos), [String(id)]); // k = 0: the prompt's token alone
      assert.equal(pos[id]!.logprob, choice.logprobs.token_logprobs[i]);
    });
  });
});

describe("return_tokens_as_token_ids (vLLM)", () => {
  const vocab = JSON.parse(readFileSync(join(SHIPPED_MODEL, "tokenizer.json"), "utf8")).model.vocab as Record<
    string,
    number
  >;
  const idOf = (name: string) => Number(/^token_id:(\d+)$/.exec(name)![1]);
  // A word after the first carries the space the word-level decoder put before it.
  const vocabId = (text: string) => vocab[text] ?? vocab[text.replace(/^ /, "")];

  test("chat: every token and alternative is token_id:<id>, special tokens too; values and bytes unchanged", async () => {
    // <|user|> (id 6) forced by logit_bias: a special token, whose text is empty.
    const body = {
      reasoning: { mode: "none" },
      max_tokens: 3,
      temperature: 0,
      logit_bias: { "6": 100 },
      logprobs: true,
      top_logprobs: 2,
    };
    const plain = (await chat(body)).choices[0]!.logprobs!.content!;
    const named = (await chat({ ...body, return_tokens_as_token_ids: true })).choices[0]!.logprobs!.content!;
    assert.deepEqual(
      plain.map((t) => t.token),
      ["", "", ""],
    );
    assert.deepEqual(
      named.map((t) => t.token),
      ["token_id:6", "token_id:6", "token_id:6"],
    );
    named.forEach((t, i) => {
      const p = plain[i]!;
      assert.ok(Math.abs(t.logprob - p.logprob) < 1e-5, `${t.logprob} vs ${p.logprob}`);
      assert.deepEqual(t.bytes, p.bytes);
      assert.equal(t.top_logprobs.length, 2);
      // Each alternative's id is the one the tokenizer gives its text.
      t.top_logprobs.forEach((x, j) => assert.equal(idOf(x.token), vocab[p.top_logprobs[j]!.token], x.token));
    });
  });

  test("completions: echoed and sampled tokens, alternatives and prompt_logprobs' decoded_token", async () => {
    const prompt = "a = 1\nprint(a)";
    const body = { prompt, max_tokens: 2, temperature: 0, echo: true, logprobs: 1, prompt_logprobs: 1 };
    type Choice = {
      text: string;
      logprobs: { tokens: string[]; text_offset: number[]; top_logprobs: (Record<string, number> | null)[] };
      prompt_logprobs: (Record<string, { decoded_token: string }> | null)[];
    };
    const plain = (await complete(body)).choices[0] as unknown as Choice;
    const named = (await complete({ ...body, return_tokens_as_token_ids: true })).choices[0] as unknown as Choice;
    assert.equal(named.text, plain.text);
    assert.deepEqual(named.logprobs.text_offset, plain.logprobs.text_offset);
    assert.equal(named.logprobs.tokens.length, plain.logprobs.tokens.length);
    named.logprobs.tokens.forEach((t, i) => assert.equal(idOf(t), vocabId(plain.logprobs.tokens[i]!), t));
    named.logprobs.top_logprobs.forEach((top, i) =>
      assert.deepEqual(
        Object.keys(top ?? {}).map(idOf),
        Object.keys(plain.logprobs.top_logprobs[i] ?? {}).map(vocabId),
      ),
    );
    for (const pos of named.prompt_logprobs.slice(1))
      for (const [id, e] of Object.entries(pos!)) assert.equal(e.decoded_token, `token_id:${id}`);
    assert.equal(named.prompt_logprobs.length, plain.prompt_logprobs.length);
  });
});

describe("logprob tokens rebuild the returned text", () => {
  const joined = (c: OpenAI.ChatCompletion.Choice) => c.logprobs!.content!.map((t) => t.token).join("");
  const bytes = (c: OpenAI.ChatCompletion.Choice) =>
    Buffer.from(c.logprobs!.content!.flatMap((t) => t.bytes!)).toString("utf8");

  test("chat, whole and streamed, with a stop string cutting a token, n = 2 sampled", async () => {
    const body = {
      ...explicit,
      temperature: 1,
      seed: 11,
      n: 2,
      max_tokens: 40,
      logprobs: true,
      top_logprobs: 1,
      stop: ["* 3 ="],
    };
    const whole = await chat(body);
    for (const c of whole.choices) {
      assert.equal(joined(c), c.message.content);
      assert.equal(bytes(c), c.message.content);
    }
    // Every sampled token of the answer has its entry, the ones the stop string cut included (the
    // trace's tokens are reasoning: they have none).
    const usage = whole.usage!;
    assert.equal(
      whole.choices.reduce((n, c) => n + c.logprobs!.content!.length, 0),
      usage.completion_tokens - usage.completion_tokens_details!.reasoning_tokens!,
    );
    const cut = whole.choices.find((c) => c.finish_reason === "stop" && c.logprobs!.content!.at(-1)!.token === "");
    assert.ok(cut, JSON.stringify(whole.choices.map((c) => c.message.content)));
    const content = ["", ""];
    const tokens = ["", ""];
    for await (const chunk of await client.chat.completions.create({
      model: MODEL,
      messages,
      ...body,
      stream: true,
    } as OpenAI.ChatCompletionCreateParamsStreaming)) {
      for (const c of chunk.choices) {
        content[c.index] += c.delta.content ?? "";
        tokens[c.index] += (c.logprobs?.content ?? []).map((t) => t.token).join("");
      }
    }
    whole.choices.forEach((c) => {
      assert.equal(content[c.index], c.message.content);
      assert.equal(tokens[c.index], c.message.content);
    });
  });

  test("completions echo + logprobs: the prompt as sent, monotonic text_offset into the returned text", async () => {
    const prompt = "a = 1\nprint(a)";
    const r = await complete({ prompt, echo: true, logprobs: 2, temperature: 0, max_tokens: 5 });
    const c = r.choices[0]!;
    assert.ok(c.text.startsWith(prompt));
    const lp = c.logprobs!;
    assert.equal(lp.tokens!.join(""), c.text);
    lp.text_offset!.forEach((o, i) => {
      if (i > 0) assert.ok(o >= lp.text_offset![i - 1]!, `text_offset ${lp.text_offset}`);
      assert.equal(c.text.slice(o, o + lp.tokens![i]!.length), lp.tokens![i]);
    });
    assert.equal(lp.token_logprobs![0], null);
    // Prompt positions carry their top logprobs (as vLLM's echo does).
    assert.equal(Object.keys(lp.top_logprobs![1]!).length, 2);
    const streamed: string[] = [];
    for await (const chunk of await client.completions.create({
      model: MODEL,
      prompt,
      echo: true,
      logprobs: 2,
      temperature: 0,
      max_tokens: 5,
      stream: true,
    })) {
      for (const ch of chunk.choices) streamed.push(...(ch.logprobs?.tokens ?? []));
    }
    assert.equal(streamed.join(""), c.text);
  });
});

describe("unknown fields", () => {
  test("ignored, named in the x-ignored-fields header and in a warning; known fields are not", async () => {
    const lines: { msg?: string; ignoredFields?: string[] }[] = [];
    const stream = new Writable({
      write(chunk, _enc, cb) {
        for (const l of String(chunk).split("\n")) if (l.trim()) lines.push(JSON.parse(l));
        cb();
      },
    });
    const app = await startAppOn(s.engine, {}, { level: "warn", stream });
    try {
      const c = sdkClient(app.url);
      const { response } = await c.chat.completions
        .create({ model: MODEL, messages, max_tokens: 7, not_a_field: 1, metadata_x: "y" } as never)
        .withResponse();
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("x-ignored-fields"), "not_a_field, metadata_x");
      const warn = lines.find((l) => l.ignoredFields);
      assert.deepEqual(warn?.ignoredFields, ["not_a_field", "metadata_x"]);
      assert.match(warn!.msg!, /were present in the request but ignored: not_a_field, metadata_x/);
      const known = await c.chat.completions
        .create({ model: MODEL, messages, max_tokens: 7, min_tokens: 1, logit_bias: { "21": 1 }, top_k: 2 } as never)
        .withResponse();
      assert.equal(known.response.headers.get("x-ignored-fields"), null);
    } finally {
      await app.close();
    }
  });
});
