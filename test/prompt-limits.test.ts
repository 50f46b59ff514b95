import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { FastifyInstance } from "fastify";
import { MESSAGE_OVERHEAD_CHARS } from "../src/api/prompt-limits.ts";
import { injectApp, type FakeEngine } from "./helpers/fake-engine.ts";

/** The text a request asks the HTTP thread to tokenize is bounded before the tokenizer or the
 * chat template runs: 400 context_length_exceeded naming the field, on every route that
 * tokenizes; token ids given directly are bounded by the context. */

const MODEL = "nfcot-trace-small";
const LIMIT = 200;
const thoughts = Array.from({ length: 6 }, () => Array.from({ length: 16 }, () => 0));

let app: FastifyInstance;
let fake: FakeEngine;
const post = (url: string, body: unknown) => app.inject({ method: "POST", url, payload: body as object });

function assertTooLong(res: { statusCode: number; json: () => any }, param: string): string {
  assert.equal(res.statusCode, 400, JSON.stringify(res.json()));
  const e = res.json().error;
  assert.deepEqual(e, { message: e.message, type: "invalid_request_error", param, code: "context_length_exceeded" });
  return e.message;
}

before(async () => {
  ({ app, fake } = await injectApp({ maxPromptChars: LIMIT }));
});
after(() => app.close());

describe("--max-prompt-chars", () => {
  test("chat: content over the limit is refused before templating; at the limit it is served", async () => {
    const over = "a".repeat(LIMIT - MESSAGE_OVERHEAD_CHARS + 1);
    const msg = assertTooLong(
      await post("/v1/chat/completions", { model: MODEL, messages: [{ role: "user", content: over }] }),
      "messages",
    );
    assert.match(msg, new RegExp(`${LIMIT + 1} characters; this server tokenizes at most ${LIMIT}`));
    fake.generated.length = 0;
    const at = await post("/v1/chat/completions", {
      model: MODEL,
      messages: [{ role: "user", content: "x = 1 ".repeat(20).slice(0, LIMIT - MESSAGE_OVERHEAD_CHARS) }],
    });
    assert.equal(at.statusCode, 200);
    assert.equal(fake.generated.length, 1);
    // Text parts count as their text.
    assertTooLong(
      await post("/v1/chat/completions", {
        model: MODEL,
        messages: [{ role: "user", content: [{ type: "text", text: over }] }],
      }),
      "messages",
    );
  });

  test("chat: many empty messages cost templating too, and are bounded", async () => {
    const many = Array.from({ length: Math.floor(LIMIT / MESSAGE_OVERHEAD_CHARS) + 1 }, () => ({
      role: "user",
      content: "",
    }));
    assertTooLong(await post("/v1/chat/completions", { model: MODEL, messages: many }), "messages");
  });

  test("completions: the sum over a list of prompts; token-id prompts over the context", async () => {
    assertTooLong(await post("/v1/completions", { model: MODEL, prompt: "a".repeat(LIMIT + 1) }), "prompt");
    assertTooLong(
      await post("/v1/completions", { model: MODEL, prompt: ["a".repeat(LIMIT / 2), "b".repeat(LIMIT / 2 + 1)] }),
      "prompt",
    );
    const msg = assertTooLong(
      await post("/v1/completions", { model: MODEL, prompt: Array.from({ length: 257 }, () => 5) }),
      "prompt",
    );
    assert.match(msg, /maximum context length is 256 tokens.*257 tokens/);
    assertTooLong(
      await post("/v1/completions", { model: MODEL, prompt: [[5, 6], Array.from({ length: 300 }, () => 5)] }),
      "prompt[1]",
    );
  });

  test("tokenize and detokenize", async () => {
    assertTooLong(await post("/tokenize", { prompt: "a".repeat(LIMIT + 1) }), "prompt");
    assertTooLong(await post("/tokenize", { messages: [{ role: "user", content: "a".repeat(LIMIT) }] }), "messages");
    assert.equal((await post("/tokenize", { prompt: "x = 1" })).statusCode, 200);
    assertTooLong(await post("/detokenize", { tokens: Array.from({ length: LIMIT + 1 }, () => 5) }), "tokens");
    assert.equal((await post("/detokenize", { tokens: Array.from({ length: LIMIT }, () => 5) })).statusCode, 200);
  });

  test("latent scoring: the prompt and every answer together", async () => {
    assertTooLong(
      await post("/v1/latent/logprobs", { model: MODEL, prompt: "a".repeat(LIMIT + 1), trajectories: [{ thoughts }] }),
      "prompt",
    );
    const answers = Array.from({ length: 5 }, () => ({ thoughts, answer: "1".repeat(LIMIT / 4) }));
    assertTooLong(
      await post("/v1/latent/logprobs", { model: MODEL, prompt: "x = 1", trajectories: answers }),
      "trajectories",
    );
    assert.equal(
      (await post("/v1/latent/logprobs", { model: MODEL, prompt: "x = 1", trajectories: answers.slice(0, 3) }))
        .statusCode,
      200,
    );
  });
});

test("the default (0) is 16 characters per token of the served context", async () => {
  const { app: auto } = await injectApp();
  try {
    const limit = 16 * 256;
    const over = await auto.inject({ method: "POST", url: "/tokenize", payload: { prompt: "a".repeat(limit + 1) } });
    assert.match(over.json().error.message, new RegExp(`at most ${limit} per request`));
    assert.equal(
      (await auto.inject({ method: "POST", url: "/tokenize", payload: { prompt: "a ".repeat(limit / 2) } })).statusCode,
      200,
    );
  } finally {
    await auto.close();
  }
});
