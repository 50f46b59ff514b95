import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { FastifyInstance } from "fastify";
import { FLOAT32_MAX, finiteFloat32Base64Pattern } from "../src/api/float32-base64.ts";
import { decodeThought } from "../src/api/thoughts.ts";
import { injectApp } from "./helpers/fake-engine.ts";

/** The served OpenAPI document states what the server enforces, and the server enforces what it
 * states: each rule is checked from both sides (the document says it; a request breaking it is
 * refused; a request keeping it is served). The fuzzer (test/reliability/schema-fuzz.test.ts)
 * explores the rest. */

const MODEL = "nfcot-trace-small";
const K = 6;
const D = 16;

let app: FastifyInstance;
let doc: any;
const post = (url: string, body: unknown) => app.inject({ method: "POST", url, payload: body as object });
const schemas = () => doc.components.schemas;

before(async () => {
  ({ app } = await injectApp());
  doc = (await app.inject("/openapi.json")).json();
});
after(() => app.close());

function assert400(res: { statusCode: number; body: string; json: () => any }, param: string | null, message?: RegExp) {
  assert.equal(res.statusCode, 400, res.body);
  const e = res.json().error;
  assert.equal(e.code, "invalid_request");
  assert.equal(e.param, param);
  if (message) assert.match(e.message, message);
}

describe("the served model's facts", () => {
  test("model is an enum of the served name (another name: 404), also under --served-model-name", async () => {
    for (const name of [
      "ChatCompletionRequest",
      "CompletionRequest",
      "LatentLogprobsRequest",
      "LatentDecodeRequest",
      "TokenizeRequest",
      "DetokenizeRequest",
    ]) {
      assert.deepEqual(schemas()[name].properties.model.enum, [MODEL], name);
    }
    assert.equal((await post("/v1/completions", { model: "string", prompt: "a" })).statusCode, 404);
    const { app: renamed } = await injectApp({ servedModelName: "my-model" });
    try {
      const d = (await renamed.inject("/openapi.json")).json();
      assert.deepEqual(d.components.schemas.ChatCompletionRequest.properties.model.enum, ["my-model"]);
      assert.equal(d.components.schemas.ChatCompletionRequest.examples[0].model, "my-model");
    } finally {
      await renamed.close();
    }
  });

  test("every request body has an example, and each example is served (the docs UI's Try it out)", async () => {
    const bodies = new Map<string, string>();
    for (const [path, item] of Object.entries<any>(doc.paths)) {
      const ref = item.post?.requestBody?.content?.["application/json"]?.schema?.$ref as string | undefined;
      if (ref) bodies.set(path, ref.split("/").pop()!);
    }
    assert.equal(bodies.size, 7);
    for (const [path, name] of bodies) {
      const example = schemas()[name].examples?.[0];
      assert.ok(example, `${name} has an example`);
      const res = await post(path, example);
      assert.equal(res.statusCode, 200, `${path}: ${res.body}`);
    }
  });

  test("thoughts: exactly K of D values; token ids below the vocabulary; n under the server's limit", async () => {
    const t = schemas().LatentDecodeRequest.properties.thoughts;
    assert.deepEqual(
      t.anyOf.map((b: any) => [b.minItems, b.maxItems]),
      [
        [K, K],
        [K, K],
      ],
    );
    assert.deepEqual(
      [t.anyOf[1].items.minItems, t.anyOf[1].items.maxItems, t.anyOf[1].items.items.maximum],
      [D, D, FLOAT32_MAX],
    );
    const zeros = Array.from({ length: D }, () => 0);
    assert400(
      await post("/v1/latent/decode", { model: MODEL, thoughts: Array.from({ length: K - 1 }, () => zeros) }),
      "thoughts",
      /Expected 6 thoughts/,
    );
    assert400(
      await post("/v1/latent/decode", {
        model: MODEL,
        thoughts: Array.from({ length: K }, (_, i) => (i === 2 ? [...zeros.slice(1), 3.5e38] : zeros)),
      }),
      "thoughts[2]",
      /float32's range/,
    );
    assert.equal(
      (
        await post("/v1/latent/decode", {
          model: MODEL,
          thoughts: Array.from({ length: K }, () => [...zeros.slice(1), FLOAT32_MAX]),
        })
      ).statusCode,
      200,
    );
    // Prompt token ids below the vocabulary (stop_token_ids may name any id: it just never matches).
    assert.equal(schemas().CompletionRequest.properties.prompt.anyOf[2].items.maximum, 245);
    assert.equal(schemas().ChatCompletionRequest.properties.stop_token_ids.anyOf[0].items.maximum, undefined);
    assert400(await post("/v1/completions", { model: MODEL, prompt: [3, 246] }), "prompt", /outside the vocabulary/);
    assert.equal(schemas().ChatCompletionRequest.properties.n.anyOf[0].maximum, 16);
  });
});

describe("rules across fields", () => {
  test("tokenize: exactly one of prompt and messages", async () => {
    assert.deepEqual(schemas().TokenizeRequest.oneOf, [{ required: ["prompt"] }, { required: ["messages"] }]);
    assert400(await post("/tokenize", {}), "prompt", /exactly one of 'prompt' and 'messages'/);
    assert400(
      await post("/tokenize", { prompt: "a", messages: [{ role: "user", content: "a" }] }),
      "messages",
      /exactly one/,
    );
    assert.equal((await post("/tokenize", { prompt: "a" })).statusCode, 200);
  });

  test("latent scoring: exactly one of messages and prompt", async () => {
    const trajectories = [{ thoughts: Array.from({ length: K }, () => Array.from({ length: D }, () => 0)) }];
    assert.deepEqual(schemas().LatentLogprobsRequest.oneOf, [{ required: ["messages"] }, { required: ["prompt"] }]);
    assert400(await post("/v1/latent/logprobs", { model: MODEL, trajectories }), "messages", /exactly one/);
    assert400(
      await post("/v1/latent/logprobs", {
        model: MODEL,
        prompt: "a",
        messages: [{ role: "user", content: "a" }],
        trajectories,
      }),
      "prompt",
      /exactly one/,
    );
  });

  test("top_logprobs needs logprobs (stated as if/then)", () => {
    const s = schemas().ChatCompletionRequest;
    assert.deepEqual(s.if.required, ["top_logprobs"]);
    assert.deepEqual(s.then.required, ["logprobs"]);
  });

  test("prompts are not blank; reasoning may be null", async () => {
    assert400(await post("/v1/completions", { model: MODEL, prompt: " \t " }), "prompt");
    assert400(await post("/v1/completions", { model: MODEL, prompt: ["a", "\u3000"] }), "prompt[1]");
    assert.equal((await post("/v1/completions", { model: MODEL, prompt: "\n" })).statusCode, 200);
    assert.equal(
      (
        await post("/v1/chat/completions", {
          model: MODEL,
          messages: [{ role: "user", content: "a" }],
          reasoning: null,
        })
      ).statusCode,
      200,
    );
    assert.equal((await post("/v1/completions", { model: MODEL, prompt: "a", reasoning: null })).statusCode, 200);
  });

  test("__proto__ is refused anywhere in a body, and the document says so on every object", async () => {
    assert.deepEqual(schemas().ChatCompletionRequest.propertyNames, { not: { const: "__proto__" } });
    assert.deepEqual(schemas().ChatCompletionRequest.properties.messages.items.propertyNames, {
      not: { const: "__proto__" },
    });
    const payload = '{"model":"nfcot-trace-small","messages":[{"role":"user","content":"a","__proto__":{"x":1}}]}';
    const res = await app.inject({
      method: "POST",
      url: "/v1/chat/completions",
      payload,
      headers: { "content-type": "application/json" },
    });
    assert.equal(res.statusCode, 400);
    assert.equal(({} as Record<string, unknown>)["x"], undefined);
  });

  test("streams: text/event-stream whose events carry the chunk schema as JSON, or [DONE]", () => {
    const media = doc.paths["/v1/chat/completions"].post.responses["200"].content["text/event-stream"];
    assert.deepEqual(media.itemSchema.properties.data.anyOf[0].contentSchema.anyOf[0], {
      $ref: "#/components/schemas/ChatCompletionChunk",
    });
    assert.deepEqual(media.itemSchema.properties.data.anyOf[1], { enum: ["[DONE]"] });
  });
});

describe("thoughts in base64: the document's pattern is exactly what the server decodes", () => {
  let seed = 12345;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };

  test("random float32 bytes (a third with a NaN or Inf planted): pattern and server agree on every one", () => {
    for (const dim of [1, 2, 3, 5, D]) {
      const re = new RegExp(finiteFloat32Base64Pattern(dim), "u");
      let finite = 0;
      for (let n = 0; n < 3000; n++) {
        const b = Buffer.alloc(dim * 4);
        for (let i = 0; i < b.length; i++) b[i] = Math.floor(rand() * 256);
        if (rand() < 0.33) {
          const f = Math.floor(rand() * dim);
          b[f * 4 + 3]! |= 0x7f;
          b[f * 4 + 2]! |= 0x80;
        }
        const s = b.toString("base64");
        const decoded = decodeThought(s);
        const ok = decoded?.every(Number.isFinite) ?? false;
        assert.equal(re.test(s), ok, `dim ${dim}: ${s}`);
        if (ok) finite++;
      }
      assert.ok(finite > 1000 && finite < 2500, `both kinds were tried (${finite} finite)`);
    }
  });

  test("non-canonical base64 is refused by both: URL-safe alphabet, missing padding, stray bits", () => {
    const re = new RegExp(finiteFloat32Base64Pattern(2), "u");
    const canonical = Buffer.from(new Float32Array([1.5, -2]).buffer).toString("base64");
    assert.ok(re.test(canonical) && decodeThought(canonical) !== null);
    for (const s of [
      canonical.replace(/=+$/, ""),
      canonical.replace("A", "-"),
      `${canonical.slice(0, -2)}B=`,
      ` ${canonical}`,
    ]) {
      assert.equal(re.test(s), false, s);
      assert.equal(decodeThought(s), null, s);
    }
  });
});
