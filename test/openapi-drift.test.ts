import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { generateOpenApiDocument } from "../scripts/openapi-document.ts";
import { serializeOpenApi } from "../src/api/openapi.ts";
import { injectApp } from "./helpers/fake-engine.ts";

/** openapi/openapi.json is committed; it must be exactly what the code generates. */

const committedPath = new URL("../openapi/openapi.json", import.meta.url);

test("the committed OpenAPI document matches the code (run `npx tsx scripts/openapi.ts` to update)", async () => {
  const generated = serializeOpenApi(await generateOpenApiDocument());
  const committed = readFileSync(committedPath, "utf8");
  assert.equal(
    committed,
    generated,
    "openapi/openapi.json drifted from the route schemas: run `npx tsx scripts/openapi.ts`",
  );
});

test("the document covers every route and names the NF-CoT extensions", async () => {
  const doc = JSON.parse(readFileSync(committedPath, "utf8"));
  assert.equal(doc.openapi, "3.1.0");
  const api = [
    "/detokenize",
    "/tokenize",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/latent/decode",
    "/v1/latent/logprobs",
    "/v1/models",
    "/v1/models/{model}",
  ];
  for (const path of api) assert.ok(doc.paths[path], `${path} is documented`);
  // Deny by default: only the always-public operations routes document no security.
  assert.ok(
    doc.paths["/v1/chat/completions"].post.security.length === 1 && doc.paths["/tokenize"].post.security.length === 1,
  );
  assert.equal(doc.paths["/health"].get.security.length, 0);
  const chatReq = doc.components.schemas.ChatCompletionRequest;
  // reasoning: null is accepted, as OpenAI accepts null for optional fields.
  assert.deepEqual(chatReq.properties.reasoning.anyOf[1], { type: "null" });
  assert.deepEqual(Object.keys(chatReq.properties.reasoning.anyOf[0].properties).sort(), [
    "latent_temperature",
    "mode",
    "return_flow_log_det",
    "return_thoughts",
  ]);
  assert.deepEqual(Object.keys(doc.components.schemas.ThoughtsSummary.properties).sort(), [
    "behaviour_log_prob",
    "behaviour_log_probs",
    "count",
    "decoded",
    "e_log_prob",
    "flow_log_det",
    "log_prob",
    "log_probs",
    "temperature",
    "vectors",
  ]);
  assert.ok(doc.paths["/v1/chat/completions"].post.responses["400"]);
});

test("the app serves the same document as JSON, and the docs UI", async () => {
  const { app } = await injectApp();
  try {
    const served = await app.inject({ method: "GET", url: "/openapi.json" });
    assert.equal(served.statusCode, 200);
    assert.deepEqual(served.json(), JSON.parse(readFileSync(committedPath, "utf8")));
    const ui = await app.inject({ method: "GET", url: "/docs/" });
    assert.equal(ui.statusCode, 200);
    assert.match(String(ui.headers["content-type"]), /text\/html/);
  } finally {
    await app.close();
  }
});
