import assert from "node:assert/strict";
import { request as httpRequest } from "node:http";
import { test } from "node:test";
import { InFlightRequests, drain } from "../src/ops/drain.ts";
import { manifest } from "./helpers/engine.ts";
import { captureLogs } from "./helpers/log-capture.ts";
import { startServer, waitFor, type TestServer } from "./helpers/server.ts";
import { postJson, readSse } from "./helpers/sse.ts";

/** Every ending says what happened: a scoring request cancelled by its client is an abort (499
 * in the log, request_success_total{finished_reason="abort"}), not an engine error; one stopped
 * at the drain deadline is a retryable 503; expected 503s while draining are one warn line each,
 * without a stack; and a KV pool smaller than the model's context lowers the served context, so
 * that every admitted stream ends with a finish_reason. */

const MODEL = "nfcot-trace-small";
const K = manifest.latent!.num_thoughts;
const D = manifest.latent!.thought_dim;
const ANSWER = "a = 1\nb = a + 2\nprint(b)\n".repeat(5); // 75 tokens: 32 trajectories take a while

/** 32 trajectories scored 8 positions per step: long enough to be cancelled midway. */
const scoringBody = JSON.stringify({
  model: MODEL,
  messages: [{ role: "user", content: "print(1)" }],
  trajectories: Array.from({ length: 32 }, (_, i) => ({
    thoughts: Array.from({ length: K }, () => Array(D).fill(0.01 * i)),
    answer: ANSWER,
  })),
});

function postScoring(s: TestServer): {
  req: ReturnType<typeof httpRequest>;
  response: Promise<{ status: number; headers: Record<string, unknown>; body: any }>;
} {
  let req!: ReturnType<typeof httpRequest>;
  const response = new Promise<{ status: number; headers: Record<string, unknown>; body: any }>((resolve, reject) => {
    req = httpRequest(
      `${s.url}/v1/latent/logprobs`,
      { method: "POST", headers: { "content-type": "application/json" } },
      (res) => {
        let text = "";
        res.on("data", (c) => (text += c));
        res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: JSON.parse(text) }));
      },
    );
    req.on("error", reject);
    req.end(scoringBody);
  });
  return { req, response };
}

const metricValue = (text: string, series: RegExp) =>
  Number(
    text
      .split("\n")
      .find((l) => series.test(l))
      ?.split(" ")
      .at(-1) ?? NaN,
  );

test("a /v1/latent/logprobs request whose client leaves is an abort: 499 in the log, no engine_error, no stack", {
  timeout: 60_000,
}, async () => {
  const { logger, lines } = captureLogs();
  const s = await startServer({ maxNumBatchedTokens: 8 }, { logger });
  try {
    const { req, response } = postScoring(s);
    response.catch(() => {}); // the client hangs up itself
    await waitFor(() => (s.engine.stats?.running ?? 0) > 0, 10_000, "scoring running");
    req.destroy();
    await waitFor(() => s.engine.inFlight === 0, 20_000, "the scoring requests aborted");
    await waitFor(() => lines.some((l) => l.code === "client_closed_request"), 5000, "the 499 log line");
    const line = lines.find((l) => l.code === "client_closed_request")!;
    assert.equal(line.level, 30);
    assert.equal(line.statusCode, 499);
    assert.equal(line.err, undefined);
    assert.deepEqual(
      lines.filter((l) => l.level >= 50),
      [],
      "nothing at error level",
    );
    const metrics = await s.app.metrics.text();
    assert.equal(metricValue(metrics, /^nfcot_request_failure_total\{code="engine_error"/), 0);
    assert.equal(metrics.includes('code="client_closed_request"'), false, "an abort is not a failure");
    assert.ok(metricValue(metrics, /^nfcot_request_success_total\{finished_reason="abort"/) >= 1);
    assert.equal(s.engine.stats!.kvBlocksUsed, 0);
  } finally {
    await s.close();
  }
});

test("a /v1/latent/logprobs request stopped by the drain deadline gets a retryable 503, logged once as a warning", {
  timeout: 60_000,
}, async () => {
  const { logger, lines } = captureLogs();
  const s = await startServer({ maxNumBatchedTokens: 8 }, { logger });
  const inFlight = new InFlightRequests();
  s.engine.observe(inFlight);
  try {
    const { response } = postScoring(s);
    await waitFor(() => (s.engine.stats?.running ?? 0) > 0, 10_000, "scoring running");
    const drained = drain({
      app: s.app,
      engine: s.engine,
      inFlight,
      state: s.app.serveState,
      timeoutMs: 50,
      log: s.app.log,
    });
    const r = await response;
    assert.equal(r.status, 503);
    assert.equal(r.headers["retry-after"], "5");
    assert.equal(r.body.error.code, "shutting_down");
    assert.equal(r.body.error.type, "service_unavailable");
    assert.match(r.body.error.message, /drain deadline/);
    assert.ok((await drained).aborted >= 1);
    const warned = lines.filter((l) => l.code === "shutting_down");
    assert.equal(warned.length, 1);
    assert.equal(warned[0]!.level, 40);
    assert.equal(warned[0]!.err, undefined, "no stack");
    assert.deepEqual(
      lines.filter((l) => l.level >= 50),
      [],
    );
  } finally {
    await s.close();
  }
});

test("while draining, each refused request is one warn line without a stack", { timeout: 60_000 }, async () => {
  const { logger, lines } = captureLogs();
  const s = await startServer({}, { logger });
  try {
    s.app.serveState.draining = true;
    const calls: [string, unknown][] = [
      ["/v1/chat/completions", { model: MODEL, messages: [{ role: "user", content: "hi" }] }],
      ["/v1/chat/completions", { model: MODEL, messages: [{ role: "user", content: "hi" }], stream: true }],
      ["/v1/completions", { model: MODEL, prompt: "x = 1" }],
      ["/v1/latent/logprobs", JSON.parse(scoringBody)],
    ];
    for (const [path, body] of calls) {
      const res = await postJson(`${s.url}${path}`, body);
      assert.equal(res.status, 503, path);
      assert.equal((await res.json()).error.code, "shutting_down");
    }
    const warned = lines.filter((l) => l.code === "shutting_down");
    assert.equal(warned.length, calls.length, "one line per request");
    for (const l of warned) {
      assert.equal(l.level, 40);
      assert.equal(l.err, undefined);
    }
    assert.deepEqual(
      lines.filter((l) => l.level >= 50),
      [],
    );
    assert.equal(
      lines.some((l) => JSON.stringify(l).includes("    at ")),
      false,
      "no stack anywhere",
    );
  } finally {
    s.app.serveState.draining = false;
    await s.close();
  }
});

test("a KV pool smaller than the model's context lowers the served context (logged): every admitted stream ends with a finish_reason", {
  timeout: 60_000,
}, async () => {
  const engineLogs: { level: string; message: string }[] = [];
  // 4 blocks of 16 positions: 64, a quarter of the model's 256.
  const s = await startServer(
    { kvCacheBlocks: 4, blockSize: 16 },
    { engineLog: (level, message) => engineLogs.push({ level, message }) },
  );
  try {
    assert.equal(s.engine.info.maxContext, 64);
    const warn = engineLogs.find((l) => l.level === "warn");
    assert.match(
      warn?.message ?? "",
      /the KV pool holds 64 positions, less than the model's context of 256: serving a max context of 64/,
    );
    const models = await (await fetch(`${s.url}/v1/models`)).json();
    assert.equal(models.data[0].max_model_len, 64);

    const messages = [{ role: "user", content: "a = 4\nb = a + 2\nprint(b)" }];
    // Admission refuses what could not finish, up front, as a 400.
    const tooLong = await postJson(`${s.url}/v1/chat/completions`, {
      model: MODEL,
      messages,
      max_tokens: 100,
      reasoning: { mode: "none" },
    });
    assert.equal(tooLong.status, 400);
    const err = (await tooLong.json()).error;
    assert.equal(err.code, "context_length_exceeded");
    assert.match(err.message, /maximum context length is 64 tokens/);

    // What is admitted runs to the (lowered) context and ends with finish_reason "length".
    for (const mode of ["none", "latent"]) {
      const res = await postJson(`${s.url}/v1/chat/completions`, {
        model: MODEL,
        messages,
        stream: true,
        ignore_eos: true,
        temperature: 0,
        reasoning: { mode },
        stream_options: { include_usage: true },
      });
      assert.equal(res.status, 200);
      const { chunks, done } = await readSse(res);
      assert.ok(done, `${mode}: [DONE]`);
      assert.equal(
        chunks.some((c) => c.error),
        false,
        `${mode}: no error chunk`,
      );
      assert.equal(chunks.find((c) => c.choices?.[0]?.finish_reason)?.choices[0].finish_reason, "length", mode);
      assert.equal(chunks.at(-1).usage.total_tokens, 64, `${mode}: the whole served context`);
    }
    await waitFor(() => s.engine.inFlight === 0 && s.engine.stats!.kvBlocksUsed === 0, 5000, "every block free");
  } finally {
    await s.close();
  }
});
