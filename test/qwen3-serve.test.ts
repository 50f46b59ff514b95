import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";
import { spawnSync } from "node:child_process";
import { PYTHON } from "./helpers/python.ts";
import { QWEN3_TOKENIZER_DIR } from "./helpers/qwen3-tokenizer.ts";
import { startServer, type TestServer } from "./helpers/server.ts";
import { postJson } from "./helpers/sse.ts";
import { sdkClient } from "./helpers/sdk.ts";

/** Bring your own model, end to end: a tiny random-weight Qwen3-shaped checkpoint with Qwen3's
 * real tokenizer, chat template and 151,936-row embedding (test/helpers/qwen3_tiny.py), exported
 * by `nfcot.export --hf` and served by the real engine over HTTP. Random weights say nothing
 * about answers: these check prompts (against Python's tokenization), streaming, the padded
 * embedding, eos ids and the byte-level logprobs. */

const SCRIPT = fileURLToPath(new URL("./helpers/qwen3_tiny.py", import.meta.url));
const ref = JSON.parse(
  readFileSync(fileURLToPath(new URL("./fixtures/qwen3-tokenizer.json", import.meta.url)), "utf8"),
);
let work: string;
let s: TestServer;
let client: OpenAI;

before(async () => {
  work = mkdtempSync(join(tmpdir(), "qwen3-tiny-"));
  const r = spawnSync(PYTHON, [SCRIPT, QWEN3_TOKENIZER_DIR, work], { encoding: "utf8", timeout: 300_000 });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  s = await startServer({ modelDir: join(work, "out") });
  client = sdkClient(s.url);
});
after(async () => {
  await s?.close();
  rmSync(work, { recursive: true, force: true });
});

const MODEL = "qwen3-tiny-random";
const thinkingOff = ref.chats.find((c: { name: string }) => c.name === "multi-turn, enable_thinking false");

describe("a Qwen3-shaped model exported from Hugging Face", () => {
  test("/v1/models: text only, and why", async () => {
    const m = (await client.models.list()).data[0] as unknown as {
      id: string;
      nfcot: { latent_available: boolean; reasoning_modes: string[] };
    };
    assert.equal(m.id, MODEL);
    assert.equal(m.nfcot.latent_available, false);
    assert.deepEqual(m.nfcot.reasoning_modes, ["none"]);
  });

  test("chat prompts are Python's tokenization of Jinja2's rendering (chat_template_kwargs reach the template)", async () => {
    const body = { model: MODEL, messages: thinkingOff.messages, chat_template_kwargs: thinkingOff.kwargs };
    const t = await (await postJson(`${s.url}/tokenize`, body)).json();
    assert.deepEqual(t.tokens, thinkingOff.ids);
    const c = (await client.chat.completions.create({
      ...body,
      max_tokens: 4,
      temperature: 0,
    } as never)) as OpenAI.ChatCompletion;
    assert.equal(c.usage!.prompt_tokens, thinkingOff.ids.length);
    // Without the kwarg the template leaves the empty think block out: a different prompt.
    const on = await (await postJson(`${s.url}/tokenize`, { model: MODEL, messages: thinkingOff.messages })).json();
    assert.equal(on.tokens.length, thinkingOff.ids.length - 4); // "<think>\n\n</think>\n\n"
  });

  test("greedy chat: the stream adds up to the whole answer, never a split character; logprob bytes are exact", async () => {
    const req = {
      model: MODEL,
      messages: [{ role: "user" as const, content: "Hello 你好 😀" }],
      temperature: 0,
      max_tokens: 40,
    };
    const whole = await client.chat.completions.create({ ...req, logprobs: true });
    const content = whole.choices[0]!.message.content!;
    assert.equal(whole.choices[0]!.finish_reason, "length");
    const lp = whole.choices[0]!.logprobs!.content!;
    assert.equal(lp.length, 40);
    assert.equal(Buffer.from(lp.flatMap((t) => t.bytes!)).toString("utf8"), content);
    // The tokens' strings rebuild the content too (a split character: "" then the character).
    assert.equal(lp.map((t) => t.token).join(""), content);
    const deltas: string[] = [];
    const streamedTokens: string[] = [];
    let finish: string | null = null;
    for await (const chunk of await client.chat.completions.create({ ...req, stream: true, logprobs: true })) {
      const c = chunk.choices[0];
      if (c?.delta?.content) deltas.push(c.delta.content);
      streamedTokens.push(...(c?.logprobs?.content ?? []).map((t) => t.token));
      if (c?.finish_reason) finish = c.finish_reason;
    }
    assert.equal(finish, "length");
    assert.equal(deltas.join(""), content);
    assert.equal(streamedTokens.join(""), content);
    for (const d of deltas) assert.ok(!d.includes("\uFFFD") || content.includes("\uFFFD"), JSON.stringify(d));
  });

  test("sampled completions (n = 3, seeded): streams match; every token has a text (none of the 267 padded ids)", async () => {
    const prompt = ref.corpus[0].text;
    const req = { model: MODEL, prompt, temperature: 1.5, max_tokens: 48, seed: 9, n: 3, logprobs: 1 };
    const whole = await client.completions.create(req);
    const streamed = new Map<number, string>();
    for await (const chunk of await client.completions.create({ ...req, stream: true })) {
      for (const c of chunk.choices) streamed.set(c.index, (streamed.get(c.index) ?? "") + c.text);
    }
    for (const c of whole.choices) {
      assert.equal(streamed.get(c.index), c.text);
      const tokens = c.logprobs!.tokens!;
      assert.equal(tokens.length, 48);
      // Each token's text is its part of the returned text ("" for part of a character).
      assert.equal(tokens.join(""), c.text);
      c.logprobs!.text_offset!.forEach((o, i, all) => assert.ok(i === 0 || o >= all[i - 1]!));
    }
    // A sampled id without a token would have no bytes: every token has its own.
    const chat = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: prompt }],
      temperature: 1.5,
      max_tokens: 48,
      seed: 9,
      n: 3,
      logprobs: true,
    });
    for (const c of chat.choices) {
      for (const t of c.logprobs!.content!) assert.ok(t.bytes!.length > 0, JSON.stringify(t));
      assert.equal(Buffer.from(c.logprobs!.content!.flatMap((t) => t.bytes!)).toString("utf8"), c.message.content);
    }
  });

  test("tools: a template that reads them gets them (the prompt grows); a forced tool call is refused", async () => {
    const messages = [{ role: "user" as const, content: "What is 2 + 3?" }];
    const tools = [
      {
        type: "function" as const,
        function: {
          name: "add",
          description: "Add two numbers",
          parameters: { type: "object", properties: { a: { type: "number" }, b: { type: "number" } } },
        },
      },
    ];
    const plain = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 1, temperature: 0 });
    const withTools = await client.chat.completions.create({
      model: MODEL,
      messages,
      tools,
      tool_choice: "auto",
      max_tokens: 1,
      temperature: 0,
    });
    assert.ok(
      withTools.usage!.prompt_tokens > plain.usage!.prompt_tokens + 20,
      `${withTools.usage!.prompt_tokens} vs ${plain.usage!.prompt_tokens}`,
    );
    await assert.rejects(
      client.chat.completions.create({ model: MODEL, messages, tools, tool_choice: "required" }),
      (e: unknown) => {
        assert.ok(e instanceof OpenAI.BadRequestError);
        assert.equal(e.code, "unsupported_parameter");
        assert.equal(e.param, "tool_choice");
        return true;
      },
    );
  });

  test("chat_template_kwargs may not override what the server sets", async () => {
    const res = await postJson(`${s.url}/v1/chat/completions`, {
      model: MODEL,
      messages: [{ role: "user", content: "x" }],
      chat_template_kwargs: { add_generation_prompt: false },
    });
    assert.equal(res.status, 400);
    const e = (await res.json()).error;
    assert.equal(e.param, "chat_template_kwargs.add_generation_prompt");
  });
});
