import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { FastifyInstance } from "fastify";
import { injectApp } from "./helpers/fake-engine.ts";
import { routerRoutes, type RouterRoute } from "./helpers/router-routes.ts";
import { rawRequest, type RawResponse } from "./reliability/helpers/raw-http.ts";

/** Deny by default, decided on the matched route: every route the router holds (from its own
 * table, so a route added later is covered) is asked without a key, with its path as written,
 * percent-encoded, and in absolute form, over a real socket. Only the public list answers. */

const KEY = "sk-route-test";
const PUBLIC = new Set(["/health", "/ready", "/metrics"]);
const DOCS = (url: string) => url === "/openapi.json" || url === "/docs" || url.startsWith("/docs/");
const TOKENIZER = new Set(["/tokenize", "/detokenize"]);

/** The test's own list of what may answer without a key, independent of the routes' config. */
function expectedOpen(url: string, flags: { publicDocs: boolean; publicTokenizer: boolean }): boolean {
  return PUBLIC.has(url) || (flags.publicDocs && DOCS(url)) || (flags.publicTokenizer && TOKENIZER.has(url));
}

/** A concrete path for a route pattern: parameters and wildcards get a harmless value. */
function concrete(url: string): string {
  return url.replace(/:[^/]+/g, "nfcot-trace-small").replace(/\*$/, "index.html");
}

/** Every letter and digit of the path percent-encoded: the router decodes it back. */
function encoded(path: string): string {
  return path.replace(/[A-Za-z0-9]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, "0")}`);
}

async function listen(app: FastifyInstance): Promise<number> {
  await app.listen({ host: "127.0.0.1", port: 0 });
  const a = app.server.address();
  return typeof a === "object" && a ? a.port : 0;
}

function send(
  port: number,
  method: string,
  target: string,
  headers: Record<string, string> = {},
): Promise<RawResponse> {
  const body = method === "POST" ? "{}" : "";
  const h = {
    host: `127.0.0.1:${port}`,
    connection: "close",
    ...(body ? { "content-type": "application/json", "content-length": String(body.length) } : {}),
    ...headers,
  };
  const head = `${method} ${target} HTTP/1.1\r\n${Object.entries(h)
    .map(([k, v]) => `${k}: ${v}`)
    .join("\r\n")}\r\n\r\n`;
  return rawRequest(port, [head + body], { timeoutMs: 10_000 });
}

function assert401(res: RawResponse, what: string, method = "GET"): void {
  assert.equal(res.status, 401, `${what}: expected 401, got ${res.status} ${res.body.slice(0, 200)}`);
  assert.match(res.headers["content-type"] ?? "", /^application\/json/, what);
  if (method === "HEAD") return; // no body on HEAD
  const body = JSON.parse(res.body);
  assert.deepEqual(
    body,
    { error: { message: body.error.message, type: "authentication_error", param: null, code: "invalid_api_key" } },
    what,
  );
}

function targets(port: number, route: RouterRoute): [string, string][] {
  const path = concrete(route.url);
  return [
    ["plain", path],
    ["percent-encoded", encoded(path)],
    ["absolute-form", `http://127.0.0.1:${port}${path}`],
    ["absolute-form, encoded", `http://127.0.0.1:${port}${encoded(path)}`],
  ];
}

async function checkEveryRoute(
  app: FastifyInstance,
  port: number,
  flags: { publicDocs: boolean; publicTokenizer: boolean },
) {
  const routes = routerRoutes(app);
  let asked = 0;
  for (const route of routes) {
    const open = expectedOpen(route.url, flags);
    for (const [kind, target] of targets(port, route)) {
      const what = `${route.method} ${route.url} (${kind}: ${target})`;
      const res = await send(port, route.method, target);
      asked++;
      if (open) assert.notEqual(res.status, 401, `${what} is public but answered 401`);
      else assert401(res, what, route.method);
    }
  }
  return asked;
}

describe("with API keys, default flags", () => {
  let app: FastifyInstance;
  let port: number;
  before(async () => {
    ({ app } = await injectApp({ apiKeys: [KEY] }));
    port = await listen(app);
  });
  after(() => app.close());

  test("the router's route list is complete: API, tokenizer, operations, docs UI, HEAD routes", () => {
    const keys = routerRoutes(app).map((r) => `${r.method} ${r.url}`);
    for (const must of [
      "POST /v1/chat/completions",
      "POST /v1/completions",
      "GET /v1/models",
      "HEAD /v1/models",
      "GET /v1/models/:model",
      "POST /v1/latent/logprobs",
      "POST /v1/latent/decode",
      "POST /tokenize",
      "POST /detokenize",
      "GET /health",
      "GET /ready",
      "GET /metrics",
      "GET /openapi.json",
      "GET /docs",
      "GET /docs/",
      "GET /docs/static/*",
      "GET /docs/json",
    ]) {
      assert.ok(keys.includes(must), `${must} is in the router's list`);
    }
    for (const r of routerRoutes(app))
      assert.ok(app.hasRoute({ method: r.method as "GET", url: r.url }), `${r.method} ${r.url} is routed`);
  });

  test("every protected route answers 401 without a key, however its path is written; public ones answer", async (t) => {
    const asked = await checkEveryRoute(app, port, { publicDocs: false, publicTokenizer: false });
    t.diagnostic(`${routerRoutes(app).length} routes, ${asked} requests`);
  });

  test("the issue's bypasses are closed", async () => {
    for (const [method, target] of [
      ["POST", "/%76%31/chat/completions"],
      ["GET", "/%76%31/models"],
      ["POST", "/v%31/latent/logprobs"],
      ["POST", `http://127.0.0.1:${port}/v1/chat/completions`],
      ["POST", "/tokenize"],
      ["GET", "/openapi.json"],
    ] as const) {
      assert401(await send(port, method, target), `${method} ${target}`);
    }
  });

  test("unmatched requests leak nothing without a key: unknown paths and wrong methods are 401", async () => {
    assert401(await send(port, "GET", "/v1/nothing"), "unknown path");
    assert401(await send(port, "GET", "/%76%31/nothing"), "unknown encoded path");
    assert401(await send(port, "DELETE", "/v1/models"), "wrong method");
    const withKey = await send(port, "DELETE", "/v1/models", { authorization: `Bearer ${KEY}` });
    assert.equal(withKey.status, 405);
  });

  test("a valid key opens protected routes, in every form", async () => {
    for (const target of ["/v1/models", "/%76%31/models", `http://127.0.0.1:${port}/v1/models`]) {
      const res = await send(port, "GET", target, { authorization: `Bearer ${KEY}` });
      assert.equal(res.status, 200, target);
      assert.equal(JSON.parse(res.body).data[0].id, "nfcot-trace-small");
    }
    assert.equal((await send(port, "GET", "/v1/models", { authorization: "Bearer sk-wrong" })).status, 401);
  });
});

describe("with API keys, --public-docs and --public-tokenizer", () => {
  let app: FastifyInstance;
  let port: number;
  before(async () => {
    ({ app } = await injectApp({ apiKeys: [KEY], publicDocs: true, publicTokenizer: true }));
    port = await listen(app);
  });
  after(() => app.close());

  test("docs and the tokenizer open; every other route still needs the key", async () => {
    await checkEveryRoute(app, port, { publicDocs: true, publicTokenizer: true });
    assert.equal((await send(port, "GET", "/openapi.json")).status, 200);
    assert.equal((await send(port, "GET", "/docs/")).status, 200);
    const tok = await send(port, "POST", "/tokenize", {});
    assert.equal(tok.status, 400); // open, and {} names no prompt
  });
});

test("without API keys every route is open", async () => {
  const { app } = await injectApp();
  try {
    const port = await listen(app);
    assert.equal((await send(port, "GET", "/%76%31/models")).status, 200);
    assert.equal((await send(port, "GET", "/openapi.json")).status, 200);
  } finally {
    await app.close();
  }
});
