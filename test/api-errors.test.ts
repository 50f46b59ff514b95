import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { FastifyInstance } from "fastify";
import { injectApp, type FakeEngine } from "./helpers/fake-engine.ts";

/** Route-level error cases through fastify inject, around a fake engine (no worker). Every error
 * must have the OpenAI shape, the right status and the right `param`. */

const MODEL = "nfcot-trace-small";
const user = (content: string) => [{ role: "user", content }];
const K = 6;
const D = 16;

let app: FastifyInstance;
let fake: FakeEngine;

function post(url: string, body: unknown, headers: Record<string, string> = {}) {
  return app.inject({
    method: "POST",
    url,
    payload: typeof body === "string" ? body : JSON.stringify(body),
    headers: { "content-type": "application/json", ...headers },
  });
}

function assertError(res: { statusCode: number; json: () => any }, status: number, code: string, param: string | null) {
  assert.equal(res.statusCode, status);
  const body = res.json();
  assert.deepEqual(Object.keys(body), ["error"]);
  assert.deepEqual(Object.keys(body.error).sort(), ["code", "message", "param", "type"]);
  assert.equal(body.error.code, code);
  assert.equal(body.error.param, param);
  assert.equal(typeof body.error.message, "string");
  assert.ok(body.error.message.length > 0);
  return body.error as { message: string; type: string; param: string | null; code: string };
}

const f32b64 = (xs: number[]) => Buffer.from(new Float32Array(xs).buffer).toString("base64");
const zeros = (n: number) => Array.from({ length: n }, () => 0);

before(async () => {
  ({ app, fake } = await injectApp({ bodyLimit: 4096, maxN: 4, maxQueue: 8 }));
});
after(() => app.close());

describe("validation errors name the param", () => {
  test("invalid JSON is a 400 in the OpenAI shape", async () => {
    const e = assertError(
      await post("/v1/chat/completions", '{"model": "x", "messages": ['),
      400,
      "invalid_request",
      null,
    );
    assert.equal(e.type, "invalid_request_error");
    assert.match(e.message, /JSON/);
  });

  test("a missing required field", async () => {
    assertError(await post("/v1/chat/completions", { model: MODEL }), 400, "invalid_request", "messages");
  });

  test("wrong types: integer given as a string is not coerced", async () => {
    assertError(
      await post("/v1/chat/completions", { model: MODEL, messages: user("a"), max_tokens: "5" }),
      400,
      "invalid_request",
      "max_tokens",
    );
    assertError(
      await post("/v1/chat/completions", { model: MODEL, messages: user("a"), stream: "yes" }),
      400,
      "invalid_request",
      "stream",
    );
  });

  test("wrong types deep inside: the path of the element", async () => {
    assertError(
      await post("/v1/chat/completions", { model: MODEL, messages: [{ role: "user", content: 5 }] }),
      400,
      "invalid_request",
      "messages[0].content",
    );
    assertError(
      await post("/v1/chat/completions", { model: MODEL, messages: [{ role: "robot", content: "a" }] }),
      400,
      "invalid_request",
      "messages[0].role",
    );
  });

  test("out of range values", async () => {
    assertError(
      await post("/v1/chat/completions", { model: MODEL, messages: user("a"), temperature: 3 }),
      400,
      "invalid_request",
      "temperature",
    );
    assertError(
      await post("/v1/chat/completions", { model: MODEL, messages: user("a"), reasoning: { mode: "deep" } }),
      400,
      "invalid_request",
      "reasoning.mode",
    );
  });

  test("n over the server's limit", async () => {
    const e = assertError(
      await post("/v1/chat/completions", { model: MODEL, messages: user("a"), n: 5 }),
      400,
      "invalid_request",
      "n",
    );
    assert.match(e.message, /at most 4/);
  });

  test("top_logprobs without logprobs", async () => {
    // A rule of the schema (the document states it too): the param is the field to fix.
    const e = assertError(
      await post("/v1/chat/completions", { model: MODEL, messages: user("a"), top_logprobs: 2 }),
      400,
      "invalid_request",
      "logprobs",
    );
    assert.equal(e.message, "logprobs must be true when top_logprobs is set.");
    assertError(
      await post("/v1/chat/completions", { model: MODEL, messages: user("a"), top_logprobs: 2, logprobs: false }),
      400,
      "invalid_request",
      "logprobs",
    );
    assert.equal(
      (await post("/v1/chat/completions", { model: MODEL, messages: user("a"), top_logprobs: 0 })).statusCode,
      200,
    );
    assert.equal(
      (await post("/v1/chat/completions", { model: MODEL, messages: user("a"), top_logprobs: 2, logprobs: true }))
        .statusCode,
      200,
    );
  });
});

describe("model, context, queue, state", () => {
  test("unknown model is 404 model_not_found with param model", async () => {
    assertError(
      await post("/v1/chat/completions", { model: "gpt-4", messages: user("a") }),
      404,
      "model_not_found",
      "model",
    );
    assertError(await post("/v1/completions", { model: "gpt-4", prompt: "a" }), 404, "model_not_found", "model");
    assertError(await app.inject({ method: "GET", url: "/v1/models/gpt-4" }), 404, "model_not_found", "model");
  });

  test("context overflow states the limit and the requested total", async () => {
    const e = assertError(
      await post("/v1/chat/completions", { model: MODEL, messages: user("a = 5"), max_tokens: 300 }),
      400,
      "context_length_exceeded",
      "messages",
    );
    const prompt = (await post("/tokenize", { messages: user("a = 5") })).json().count as number;
    assert.match(e.message, /maximum context length is 256 tokens/);
    assert.ok(e.message.includes(`requested ${prompt + 300} tokens`), e.message);
    assertError(
      await post("/v1/completions", { model: MODEL, prompt: "a = 5", max_tokens: 300 }),
      400,
      "context_length_exceeded",
      "prompt",
    );
  });

  test("absent max_tokens means whatever fits: prompt + K thoughts + max = context", async () => {
    fake.generated.length = 0;
    const res = await post("/v1/chat/completions", { model: MODEL, messages: user("a = 5\nprint(a)") });
    assert.equal(res.statusCode, 200);
    const req = fake.generated[0]!;
    assert.equal(req.promptIds.at(-1), 4); // <bot>: latent is the default mode
    assert.equal(req.promptIds.length + K + req.sampling.maxTokens, 256);
    assert.equal(res.json().choices[0].message.content, "7");
  });

  test("queue full is 429 with Retry-After", async () => {
    fake.inFlight = 7;
    try {
      const res = await post("/v1/chat/completions", { model: MODEL, messages: user("a"), n: 2 });
      assertError(res, 429, "queue_full", null);
      assert.equal(res.headers["retry-after"], "1");
    } finally {
      fake.inFlight = 0;
    }
  });

  test("a request that could never fit the queue is a 400 naming its size", async () => {
    const thoughts = Array.from({ length: K }, () => zeros(D));
    const res = await post("/v1/latent/logprobs", {
      model: MODEL,
      prompt: "a",
      trajectories: Array.from({ length: 9 }, () => ({ thoughts })),
    });
    assert.match(assertError(res, 400, "invalid_request", "trajectories").message, /at most 8/);
  });

  test("draining refuses new generation with 503 shutting_down", async () => {
    app.serveState.draining = true;
    try {
      const res = await post("/v1/chat/completions", { model: MODEL, messages: user("a") });
      assertError(res, 503, "shutting_down", null);
      assert.ok(res.headers["retry-after"]);
      assertError(
        await post("/v1/latent/logprobs", { model: MODEL, prompt: "a", trajectories: [{ thoughts: [] }] }),
        503,
        "shutting_down",
        null,
      );
    } finally {
      app.serveState.draining = false;
    }
  });

  test("body over the limit is 413", async () => {
    const res = await post("/v1/chat/completions", { model: MODEL, messages: user("x ".repeat(3000)) });
    assert.match(assertError(res, 413, "payload_too_large", null).message, /4096 bytes/);
  });

  test("unknown routes are 404 in the OpenAI shape", async () => {
    assertError(await app.inject({ method: "GET", url: "/v1/nothing" }), 404, "not_found", null);
  });
});

describe("thoughts given to scoring and decoding", () => {
  const score = (thoughts: unknown) =>
    post("/v1/latent/logprobs", { model: MODEL, prompt: "a = 5", trajectories: [{ thoughts, answer: "5" }] });
  const good = () => Array.from({ length: K }, () => zeros(D));

  test("wrong count", async () => {
    const e = assertError(await score(good().slice(1)), 400, "invalid_request", "trajectories[0].thoughts");
    assert.match(e.message, /Expected 6 thoughts/);
  });

  test("wrong dimension, as arrays and as base64", async () => {
    const t = good();
    t[2] = zeros(D - 1);
    assertError(await score(t), 400, "invalid_request", "trajectories[0].thoughts[2]");
    const b = good().map(f32b64);
    b[4] = f32b64(zeros(D + 1));
    assertError(await score(b), 400, "invalid_request", "trajectories[0].thoughts[4]");
  });

  test("NaN and Inf in base64, Inf in JSON (1e999), and non-base64 text", async () => {
    const b = good().map(f32b64);
    b[1] = f32b64([NaN, ...zeros(D - 1)]);
    assertError(await score(b), 400, "invalid_request", "trajectories[0].thoughts[1]");
    b[1] = f32b64([...zeros(D - 1), Infinity]);
    assertError(await score(b), 400, "invalid_request", "trajectories[0].thoughts[1]");
    const raw = JSON.stringify({ model: MODEL, prompt: "a", trajectories: [{ thoughts: good() }] }).replace(
      "[[0,",
      "[[1e999,",
    );
    assertError(await post("/v1/latent/logprobs", raw), 400, "invalid_request", "trajectories[0].thoughts[0][0]");
    b[1] = "not base64!";
    assertError(await score(b), 400, "invalid_request", "trajectories[0].thoughts[1]");
  });

  test("messages and prompt are exclusive", async () => {
    assertError(
      await post("/v1/latent/logprobs", { model: MODEL, trajectories: [{ thoughts: good() }] }),
      400,
      "invalid_request",
      "messages",
    );
  });

  test("a valid request reaches the engine with the answer followed by EOS", async () => {
    fake.scored.length = 0;
    const res = await score(good().map(f32b64));
    assert.equal(res.statusCode, 200);
    const req = fake.scored[0]!;
    assert.equal(req.thoughts.length, K);
    assert.equal(req.promptIds.at(-1), 4); // <bot> appended to the raw prompt
    assert.equal(req.answerIds.at(-1), 3); // </s>
    const d = res.json().data[0];
    assert.equal(d.thought_log_prob, -K);
    assert.equal(d.answer_logprobs.length, req.answerIds.length);
    assert.equal(d.log_prob, d.thought_log_prob + d.answer_log_prob);
  });

  test("decode validates the same way and formats the trace", async () => {
    assertError(
      await post("/v1/latent/decode", { model: MODEL, thoughts: good().slice(2) }),
      400,
      "invalid_request",
      "thoughts",
    );
    const res = await post("/v1/latent/decode", { model: MODEL, thoughts: good() });
    assert.equal(res.statusCode, 200);
    assert.equal(res.json().decoded, Array.from({ length: K }, () => "a = 7").join("\n"));
  });
});

describe("errors after the SSE headers", () => {
  test("an engine error mid-stream becomes an error chunk, then [DONE]", async () => {
    const saved = fake.script;
    fake.script = (req) => [
      { type: "token", id: req.id, tokenId: 153, text: "7" },
      { type: "error", id: req.id, code: "engine_error", message: "the engine worker exited" },
    ];
    try {
      const res = await post("/v1/chat/completions", { model: MODEL, messages: user("a"), stream: true });
      assert.equal(res.statusCode, 200);
      assert.match(String(res.headers["content-type"]), /text\/event-stream/);
      const data = res.body
        .split("\n\n")
        .filter(Boolean)
        .map((l) => l.replace(/^data: /, ""));
      assert.equal(data.at(-1), "[DONE]");
      const err = JSON.parse(data.at(-2)!);
      assert.deepEqual(err, {
        error: { message: "the engine worker exited", type: "server_error", param: null, code: "engine_error" },
      });
      assert.equal(JSON.parse(data[1]!).choices[0].delta.content, "7");
    } finally {
      fake.script = saved;
    }
  });
});

describe("API keys", () => {
  let keyed: FastifyInstance;
  before(async () => {
    ({ app: keyed } = await injectApp({ apiKeys: ["sk-test-1", "sk-test-2"] }));
  });
  after(() => keyed.close());

  test("/v1 routes need a valid bearer key: 401 in the OpenAI shape", async () => {
    const none = await keyed.inject({ method: "GET", url: "/v1/models" });
    assert.equal(assertError(none, 401, "invalid_api_key", null).type, "authentication_error");
    const wrong = await keyed.inject({
      method: "GET",
      url: "/v1/models",
      headers: { authorization: "Bearer sk-nope" },
    });
    assertError(wrong, 401, "invalid_api_key", null);
    const ok = await keyed.inject({ method: "GET", url: "/v1/models", headers: { authorization: "Bearer sk-test-2" } });
    assert.equal(ok.statusCode, 200);
    assert.equal(ok.json().data[0].id, MODEL);
  });

  test("401 comes before the body is judged", async () => {
    const res = await keyed.inject({
      method: "POST",
      url: "/v1/chat/completions",
      payload: "{not json",
      headers: { "content-type": "application/json" },
    });
    assertError(res, 401, "invalid_api_key", null);
  });

  test("docs, the OpenAPI document and the tokenizer need the key by default; health does not", async () => {
    for (const url of ["/openapi.json", "/docs/json", "/docs/"]) {
      assertError(await keyed.inject({ method: "GET", url }), 401, "invalid_api_key", null);
      assert.equal(
        (await keyed.inject({ method: "GET", url, headers: { authorization: "Bearer sk-test-1" } })).statusCode,
        200,
      );
    }
    assertError(
      await keyed.inject({ method: "POST", url: "/tokenize", payload: { prompt: "a" } }),
      401,
      "invalid_api_key",
      null,
    );
    assert.equal((await keyed.inject({ method: "GET", url: "/health" })).statusCode, 200);
  });

  test("--public-docs and --public-tokenizer open exactly those", async () => {
    const { app: open } = await injectApp({ apiKeys: ["sk-test-1"], publicDocs: true, publicTokenizer: true });
    try {
      assert.equal((await open.inject({ method: "GET", url: "/openapi.json" })).statusCode, 200);
      assert.equal((await open.inject({ method: "GET", url: "/docs/json" })).statusCode, 200);
      assert.equal((await open.inject({ method: "POST", url: "/tokenize", payload: { prompt: "a" } })).statusCode, 200);
      assertError(await open.inject({ method: "GET", url: "/v1/models" }), 401, "invalid_api_key", null);
    } finally {
      await open.close();
    }
  });
});
