import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import { buildApp } from "../src/app.ts";
import { loadManifest } from "../src/model/manifest.ts";
import { ModelTokenizer } from "../src/model/tokenizer.ts";
import { fakeEngine } from "./helpers/fake-engine.ts";
import { testConfig } from "./helpers/server.ts";

/** The ops plugin's HTTP-edge behaviour inside the real app (fake engine, fastify inject):
 * request ids in headers and log lines, CORS before authentication, failures counted by code. */

const ORIGIN = "https://ui.example";
const KEY = "sk-test-1";
const lines: Record<string, unknown>[] = [];
let app: FastifyInstance;

before(async () => {
  const config = testConfig({ apiKeys: [KEY], corsOrigins: [ORIGIN], logLevel: "info" });
  const manifest = loadManifest(config.modelDir);
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split("\n")) if (l.trim()) lines.push(JSON.parse(l));
      cb();
    },
  });
  app = await buildApp({
    config,
    engine: fakeEngine().engine,
    tokenizer: new ModelTokenizer(config.modelDir, manifest),
    manifest,
    logger: { level: "info", stream },
  });
  await app.ready();
});
after(() => app.close());

const chat = (headers: Record<string, string>) =>
  app.inject({
    method: "POST",
    url: "/v1/chat/completions",
    headers: { "content-type": "application/json", ...headers },
    payload: JSON.stringify({
      model: "nfcot-trace-small",
      messages: [{ role: "user", content: "x = 1" }],
      max_tokens: 10,
    }),
  });

const failures = async (code: string) => {
  const text = (await app.inject("/metrics")).body;
  const m = new RegExp(
    `^nfcot_request_failure_total\\{code="${code}",model_name="nfcot-trace-small"\\} (\\d+)$`,
    "m",
  ).exec(text);
  assert.ok(m, `no failure series for ${code}`);
  return Number(m[1]);
};

test("a sane x-request-id is kept, echoed, and in every log line of the request; otherwise a UUID is made", async () => {
  const res = await chat({ authorization: `Bearer ${KEY}`, "x-request-id": "client-abc.123" });
  assert.equal(res.statusCode, 200);
  assert.equal(res.headers["x-request-id"], "client-abc.123");
  const mine = lines.filter((l) => l.reqId === "client-abc.123");
  assert.deepEqual(
    mine.map((l) => l.msg),
    ["incoming request", "request completed"],
  );
  assert.ok(
    lines.filter((l) => "req" in l || "res" in l).every((l) => typeof l.reqId === "string"),
    "every request line has an id",
  );

  const made = await chat({ authorization: `Bearer ${KEY}`, "x-request-id": "bad id with spaces\n" });
  assert.match(String(made.headers["x-request-id"]), /^[0-9a-f-]{36}$/);
  const other = await chat({ authorization: `Bearer ${KEY}` });
  assert.match(String(other.headers["x-request-id"]), /^[0-9a-f-]{36}$/);
  assert.notEqual(other.headers["x-request-id"], made.headers["x-request-id"]);
});

test("CORS: a preflight is answered before authentication; errors carry the CORS headers; other origins get none", async () => {
  const pre = await app.inject({
    method: "OPTIONS",
    url: "/v1/chat/completions",
    headers: {
      origin: ORIGIN,
      "access-control-request-method": "POST",
      "access-control-request-headers": "authorization, content-type",
    },
  });
  assert.equal(pre.statusCode, 204);
  assert.equal(pre.headers["access-control-allow-origin"], ORIGIN);
  assert.equal(pre.headers["access-control-allow-methods"], "GET, POST, OPTIONS");
  assert.equal(pre.headers["access-control-allow-headers"], "authorization, content-type");
  assert.equal(pre.headers.vary, "Origin");

  const denied = await chat({ origin: ORIGIN });
  assert.equal(denied.statusCode, 401);
  assert.equal(denied.json().error.code, "invalid_api_key");
  assert.equal(denied.headers["access-control-allow-origin"], ORIGIN, "the browser may read the 401");
  assert.match(String(denied.headers["access-control-expose-headers"]), /x-request-id/);

  const foreign = await app.inject({
    method: "OPTIONS",
    url: "/v1/chat/completions",
    headers: { origin: "https://evil.example", "access-control-request-method": "POST" },
  });
  assert.equal(foreign.headers["access-control-allow-origin"], undefined);
  const plain = await app.inject("/health");
  assert.equal(plain.headers["access-control-allow-origin"], undefined, "no Origin, no CORS headers");
});

test("failures are counted by the OpenAI error code; ops routes and successes are not", async () => {
  const before401 = await failures("invalid_api_key");
  const before404 = await failures("not_found");
  const before400 = await failures("invalid_request");
  assert.equal((await chat({ authorization: "Bearer wrong" })).statusCode, 401);
  assert.equal((await chat({})).statusCode, 401);
  // An unknown route tells a caller without a key nothing (deny by default), one with a key 404.
  assert.equal((await app.inject("/nothing-here")).statusCode, 401);
  assert.equal(
    (await app.inject({ url: "/nothing-here", headers: { authorization: `Bearer ${KEY}` } })).statusCode,
    404,
  );
  const bad = await app.inject({
    method: "POST",
    url: "/v1/chat/completions",
    headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
    payload: "{",
  });
  assert.equal(bad.statusCode, 400);
  assert.equal((await chat({ authorization: `Bearer ${KEY}` })).statusCode, 200);
  assert.equal(await failures("invalid_api_key"), before401 + 3);
  assert.equal(await failures("not_found"), before404 + 1);
  assert.equal(await failures("invalid_request"), before400 + 1);
  // /metrics, /health and /ready need no key and are never failures.
  assert.equal((await app.inject("/metrics")).statusCode, 200);
  assert.equal(await failures("not_ready"), 0);
});

test("a successful POST /v1/latent/logprobs counts as a latent scoring request", async () => {
  const count = async () =>
    Number(/^nfcot_latent_scoring_requests_total\{[^}]*\} (\d+)$/m.exec((await app.inject("/metrics")).body)![1]);
  const before = await count();
  const thoughts = Array.from({ length: 6 }, () => Buffer.from(new Float32Array(16).buffer).toString("base64"));
  const res = await app.inject({
    method: "POST",
    url: "/v1/latent/logprobs",
    headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
    payload: JSON.stringify({
      model: "nfcot-trace-small",
      prompt: "x = 1",
      trajectories: [{ thoughts }, { thoughts, answer: "1" }],
    }),
  });
  assert.equal(res.statusCode, 200, res.body);
  assert.equal(await count(), before + 1);
  const rejected = await app.inject({
    method: "POST",
    url: "/v1/latent/logprobs",
    headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
    payload: "{}",
  });
  assert.equal(rejected.statusCode, 400);
  assert.equal(await count(), before + 1);
});
