import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import { injectApp } from "./helpers/fake-engine.ts";
import { head, rawRequest, type RawResponse } from "./reliability/helpers/raw-http.ts";

/** HTTP conformance over real sockets: wrong method, wrong media type, undecodable paths, slow and
 * idle clients, unmeetable Expect. Each answer has the right status, the OpenAI error shape, and
 * is counted in nfcot_request_failure_total by its code. */

let app: FastifyInstance;
let port: number;
const CLIENT_TIMEOUT_MS = 1000;

before(async () => {
  ({ app } = await injectApp({ clientTimeoutMs: CLIENT_TIMEOUT_MS }));
  await app.listen({ host: "127.0.0.1", port: 0 });
  const a = app.server.address();
  port = typeof a === "object" && a ? a.port : 0;
});
after(() => app.close());

function assertOpenAIError(res: RawResponse, status: number, code: string): { message: string; param: string | null } {
  assert.equal(res.status, status, `expected ${status}, got ${res.status}: ${res.body.slice(0, 300)}`);
  assert.match(res.headers["content-type"] ?? "", /^application\/json/);
  const body = JSON.parse(res.body);
  assert.deepEqual(Object.keys(body), ["error"]);
  assert.deepEqual(Object.keys(body.error).sort(), ["code", "message", "param", "type"]);
  assert.equal(body.error.code, code);
  assert.ok(body.error.message.length > 0);
  return body.error;
}

async function failures(): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^nfcot_request_failure_total\{[^}]*code="([^"]+)"[^}]*\} (\S+)$/gm))
    out.set(m[1]!, Number(m[2]));
  return out;
}

async function counted(code: string, run: () => Promise<void>): Promise<void> {
  const before = (await failures()).get(code) ?? 0;
  await run();
  const afterwards = (await failures()).get(code) ?? 0;
  assert.equal(afterwards - before, 1, `one ${code} failure counted`);
}

const JSON_BODY = '{"model":"nfcot-trace-small","messages":[{"role":"user","content":"a"}]}';

test("wrong method: 405 with Allow, in the OpenAI shape", async () => {
  await counted("method_not_allowed", async () => {
    const res = await rawRequest(port, [head("GET", "/v1/chat/completions")]);
    assertOpenAIError(res, 405, "method_not_allowed");
    assert.equal(res.headers["allow"], "POST");
  });
  const models = await rawRequest(port, [head("POST", "/v1/models", { "content-type": "application/json" }, 2), "{}"]);
  assertOpenAIError(models, 405, "method_not_allowed");
  assert.equal(models.headers["allow"], "GET, HEAD");
  const byName = await rawRequest(port, [head("DELETE", "/v1/models/nfcot-trace-small")]);
  assert.equal(byName.headers["allow"], "GET, HEAD");
  // An unknown path stays 404.
  assertOpenAIError(await rawRequest(port, [head("GET", "/v1/nothing")]), 404, "not_found");
});

test("a body that is not JSON by its content type: 415, for text/plain too", async () => {
  await counted("unsupported_media_type", async () => {
    const res = await rawRequest(port, [
      head("POST", "/v1/chat/completions", { "content-type": "text/plain" }, JSON_BODY.length),
      JSON_BODY,
    ]);
    assertOpenAIError(res, 415, "unsupported_media_type");
  });
  for (const type of ["application/x-www-form-urlencoded", "text/html", "multipart/form-data; boundary=x"]) {
    const res = await rawRequest(port, [
      head("POST", "/v1/completions", { "content-type": type }, JSON_BODY.length),
      JSON_BODY,
    ]);
    assertOpenAIError(res, 415, "unsupported_media_type");
  }
  // application/json with a charset is fine (a model answer proves it went through).
  const ok = await rawRequest(port, [
    head("POST", "/v1/chat/completions", { "content-type": "application/json; charset=utf-8" }, JSON_BODY.length),
    JSON_BODY,
  ]);
  assert.equal(ok.status, 200);
});

test("a path that is not valid percent-encoding: 400 in the OpenAI shape", async () => {
  await counted("invalid_request", async () => {
    const e = assertOpenAIError(await rawRequest(port, [head("GET", "/v1/models/%ff")]), 400, "invalid_request");
    assert.match(e.message, /percent-encoded/);
  });
  assertOpenAIError(await rawRequest(port, [head("GET", "/v1/models/%E0%A4%A")]), 400, "invalid_request");
});

test("Expect: bogus is 417 in the OpenAI shape; 100-continue still works", async () => {
  await counted("expectation_failed", async () => {
    const res = await rawRequest(port, [
      head("POST", "/v1/chat/completions", { "content-type": "application/json", expect: "bogus" }, JSON_BODY.length),
      JSON_BODY,
    ]);
    const e = assertOpenAIError(res, 417, "expectation_failed");
    assert.equal(e.param, "expect");
  });
  const cont = await rawRequest(
    port,
    [
      head(
        "POST",
        "/v1/chat/completions",
        { "content-type": "application/json", expect: "100-continue" },
        JSON_BODY.length,
      ),
      JSON_BODY,
    ],
    { gapMs: 50 },
  );
  assert.equal(cont.status, 100);
});

test("slow and idle clients get 408 in the OpenAI shape, not 400", { timeout: 30_000 }, async () => {
  await counted("request_timeout", async () => {
    // Headers trickled and never finished.
    const res = await rawRequest(port, ["POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"], {
      timeoutMs: CLIENT_TIMEOUT_MS * 6,
    });
    assertOpenAIError(res, 408, "request_timeout");
  });
  // Headers sent, then the body stalls.
  const stalled = await rawRequest(
    port,
    [
      head("POST", "/v1/chat/completions", { "content-type": "application/json" }, JSON_BODY.length),
      JSON_BODY.slice(0, 10),
    ],
    { timeoutMs: CLIENT_TIMEOUT_MS * 6 },
  );
  assertOpenAIError(stalled, 408, "request_timeout");
  assert.ok(stalled.closedByServer);
  // Connected, and nothing sent at all.
  const idle = await rawRequest(port, [""], { timeoutMs: CLIENT_TIMEOUT_MS * 6 });
  assertOpenAIError(idle, 408, "request_timeout");
  assert.ok(idle.closedByServer);
});
