import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import Fastify, { type FastifyInstance } from "fastify";
import type { EngineClient } from "../src/engine/client.ts";
import type { EngineHandle } from "../src/engine/engine-handle.ts";
import type { EngineEvent, GenerateRequest, ScoreRequest } from "../src/engine/types.ts";
import { startLoadingServer } from "../src/ops/loading-server.ts";
import { opsPlugin } from "../src/ops/plugin.ts";
import { PROBE_ID_PREFIX } from "../src/ops/probe.ts";
import { startEngine } from "./helpers/engine.ts";
import { fakeEngine } from "./helpers/fake-engine.ts";

/** /health and /ready on a plain Fastify instance with the ops plugin around the real engine
 * worker (the shipped model), a stand-in engine for the probe timeout, and the loading-phase
 * responder. */

const MODEL = "nfcot-trace-small";
let engine: EngineClient;
let app: FastifyInstance;
const state = { ready: true, draining: false };
const submitted: string[] = [];

async function opsApp(e: EngineHandle, readinessTimeoutMs: number, flags = state): Promise<FastifyInstance> {
  const a = Fastify();
  await a.register(opsPlugin, {
    engine: e,
    config: { corsOrigins: [], readinessTimeoutMs },
    modelName: MODEL,
    state: flags,
  });
  await a.ready();
  return a;
}

function assertUnavailable(
  res: { statusCode: number; headers: Record<string, unknown>; json: () => any },
  code: string,
  retryAfter: string | undefined,
) {
  assert.equal(res.statusCode, 503);
  assert.equal(res.headers["retry-after"], retryAfter);
  const { error } = res.json();
  assert.equal(error.code, code);
  assert.equal(error.type, "service_unavailable");
  assert.equal(error.param, null);
  assert.ok(error.message.length > 0);
  return error.message as string;
}

before(async () => {
  engine = await startEngine({ kvCacheBlocks: 32 });
  engine.observe({ onSubmit: (r: GenerateRequest | ScoreRequest) => submitted.push(r.id), onEvent() {}, onStats() {} });
  app = await opsApp(engine, 10_000);
});
after(async () => {
  await app.close();
  await engine.close();
});

describe("with the real engine", () => {
  test("GET and HEAD /health: 200 while the worker is alive", async () => {
    const res = await app.inject("/health");
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { status: "ok" });
    assert.equal((await app.inject({ method: "HEAD", url: "/health" })).statusCode, 200);
  });

  test("GET /ready runs one probe generation for concurrent checks, caches it, and keeps it out of the metrics", async () => {
    submitted.length = 0;
    const [a, b] = await Promise.all([app.inject("/ready"), app.inject("/ready")]);
    for (const res of [a, b]) {
      assert.equal(res.statusCode, 200);
      const body = res.json();
      assert.equal(body.status, "ready");
      assert.equal(body.model, MODEL);
      assert.ok(body.probe_ms >= 0 && body.probe_ms < 10_000);
    }
    assert.equal((await app.inject("/ready")).statusCode, 200);
    assert.equal(submitted.length, 1, "one probe for three checks within the cache window");
    assert.ok(submitted[0]!.startsWith(PROBE_ID_PREFIX));
    const metrics = (await app.inject("/metrics")).body;
    assert.match(metrics, /^nfcot_generation_tokens_total\{model_name="nfcot-trace-small"\} 0$/m);
    assert.match(metrics, /^nfcot_request_success_total\{finished_reason="stop",model_name="nfcot-trace-small"\} 0$/m);
    assert.match(
      metrics,
      /^nfcot_request_success_total\{finished_reason="length",model_name="nfcot-trace-small"\} 0$/m,
    );
  });

  test("GET /ready: 503 not_ready while loading, 503 shutting_down while draining; /health stays 200", async () => {
    state.ready = false;
    try {
      assert.match(assertUnavailable(await app.inject("/ready"), "not_ready", "5"), /loading/);
    } finally {
      state.ready = true;
    }
    state.draining = true;
    try {
      assertUnavailable(await app.inject("/ready"), "shutting_down", "30");
      assert.equal((await app.inject("/health")).statusCode, 200);
    } finally {
      state.draining = false;
    }
    assert.equal((await app.inject("/ready")).statusCode, 200);
  });
});

test("GET /ready: 503 when the one-token probe does not finish within readinessTimeoutMs, and the probe is aborted", async () => {
  let returned = 0;
  const stalled: EngineHandle = {
    ...fakeEngine().engine,
    generate: (): AsyncIterableIterator<EngineEvent> => ({
      next: () => new Promise<IteratorResult<EngineEvent>>(() => {}), // a stuck engine never answers
      return: async () => {
        returned++;
        return { value: undefined, done: true };
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    }),
  };
  const a = await opsApp(stalled, 100, { ready: true, draining: false });
  try {
    const t0 = Date.now();
    const message = assertUnavailable(await a.inject("/ready"), "not_ready", "1");
    assert.match(message, /did not finish within 100 ms/);
    assert.ok(Date.now() - t0 >= 95);
    assert.equal(returned, 1, "the probe generation was abandoned (its iterator returned, which aborts it)");
    assert.equal((await a.inject("/health")).statusCode, 200, "a slow engine is not a dead one");
  } finally {
    await a.close();
  }
});

test("the loading-phase responder: /health 200, /ready and the API 503 not_ready with Retry-After; the port is freed", async () => {
  const loading = await startLoadingServer("127.0.0.1", 0);
  const url = `http://127.0.0.1:${loading.port}`;
  try {
    const health = await fetch(`${url}/health`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: "ok" });
    for (const [method, path] of [
      ["GET", "/ready"],
      ["POST", "/v1/chat/completions"],
      ["GET", "/metrics"],
    ] as const) {
      const res = await fetch(`${url}${path}`, { method, headers: { "x-request-id": "load-1" } });
      assert.equal(res.status, 503, path);
      assert.equal(res.headers.get("retry-after"), "5");
      assert.equal(res.headers.get("x-request-id"), "load-1");
      const { error } = (await res.json()) as { error: { code: string; message: string } };
      assert.equal(error.code, "not_ready");
      assert.match(error.message, /loading/);
    }
  } finally {
    await loading.close();
  }
  await assert.rejects(fetch(`${url}/health`), "closed: the port is free for the app");
});

// Last: it stops the shared engine.
test("GET /health and /ready: 503 once the engine worker is gone", async () => {
  await engine.close();
  assertUnavailable(await app.inject("/health"), "not_ready", undefined);
  assertUnavailable(await app.inject("/ready"), "not_ready", "5");
});
