import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { startServer, type TestServer } from "./helpers/server.ts";
import { postJson, readSse } from "./helpers/sse.ts";
import { freePort } from "../bench/lib/server-process.ts";

/** For real: a Prometheus server (Debian's package) on loopback scrapes the app every second; the
 * values read back through its query API must match what the responses reported, and promtool
 * must find nothing to complain about in /metrics. */

const MODEL = "nfcot-trace-small";
let server: TestServer;
let prom: ChildProcess | null = null;
let promUrl = "";
let dir = "";
let promLog = "";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function requireBinary(name: string): void {
  const r = spawnSync(name, ["--version"], { encoding: "utf8" });
  if (r.error) {
    assert.fail(
      `${name} is not installed (${r.error.message}): run \`npm run test:deps\` (Debian: apt-get install -y prometheus)`,
    );
  }
}

/** One instant-vector query; the samples' values by their label sets. */
async function query(q: string): Promise<{ metric: Record<string, string>; value: number }[]> {
  const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(q)}`);
  const body = (await res.json()) as {
    status: string;
    data: { result: { metric: Record<string, string>; value: [number, string] }[] };
  };
  assert.equal(body.status, "success", JSON.stringify(body));
  return body.data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
}

/** Polls Prometheus until the query's single value equals `want` (it scrapes every second). */
async function until(
  q: string,
  want: number,
  timeoutMs = 20_000,
): Promise<{ metric: Record<string, string>; value: number }> {
  const end = Date.now() + timeoutMs;
  let last: unknown = "no sample";
  while (Date.now() < end) {
    const r = await query(q);
    if (r.length === 1 && r[0]!.value === want) return r[0]!;
    last = r.map((s) => s.value);
    await sleep(250);
  }
  assert.fail(`${q}: wanted ${want}, Prometheus last had ${JSON.stringify(last)}\n${promLog.slice(-2000)}`);
}

before(async () => {
  requireBinary("prometheus");
  requireBinary("promtool");
  server = await startServer();
  dir = mkdtempSync(join(tmpdir(), "nfcot-prom-"));
  const target = new URL(server.url).host;
  writeFileSync(
    join(dir, "prometheus.yml"),
    [
      "global:",
      "  scrape_interval: 1s",
      "  evaluation_interval: 1s",
      "scrape_configs:",
      "  - job_name: nfcot",
      "    scrape_interval: 1s",
      "    scrape_timeout: 900ms",
      "    static_configs:",
      `      - targets: ["${target}"]`,
      "",
    ].join("\n"),
  );
  const port = await freePort();
  promUrl = `http://127.0.0.1:${port}`;
  prom = spawn(
    "prometheus",
    [
      `--config.file=${join(dir, "prometheus.yml")}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  prom.stdout!.on("data", (d) => (promLog += d));
  prom.stderr!.on("data", (d) => (promLog += d));
  const end = Date.now() + 30_000;
  for (;;) {
    assert.equal(prom.exitCode, null, `prometheus exited: ${promLog}`);
    const ok = await fetch(`${promUrl}/-/ready`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    assert.ok(Date.now() < end, `prometheus did not become ready: ${promLog}`);
    await sleep(200);
  }
  await until(`up{job="nfcot"}`, 1);
});

after(async () => {
  if (prom && prom.exitCode === null) {
    const exited = new Promise((r) => prom!.once("exit", r));
    prom.kill("SIGTERM");
    await Promise.race([exited, sleep(5000)]);
    if (prom.exitCode === null) prom.kill("SIGKILL");
  }
  await server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("Prometheus reads back the token counts, finish reasons and latencies that the responses report", async () => {
  // Before any traffic: the counters exist at zero.
  await until(`nfcot_generation_tokens_total{model_name="${MODEL}"}`, 0);
  await until(`nfcot_request_success_total{finished_reason="stop"}`, 0);

  const programs = ["x = 3\nprint(x + 4)", "a = 2\nb = a * 5\nprint(b)", "y = 7\nprint(y - 2)"];
  const whole = await Promise.all(
    programs.map(async (content, i) => {
      const res = await postJson(`${server.url}/v1/chat/completions`, {
        model: MODEL,
        messages: [{ role: "user", content }],
        // The last one writes an explicit trace (always longer than 2 tokens): it stops on its length.
        max_tokens: i === 2 ? 2 : 40,
        temperature: 0,
        reasoning: { mode: i === 1 ? "none" : i === 2 ? "explicit" : "latent" },
      });
      assert.equal(res.status, 200);
      return (await res.json()) as any;
    }),
  );
  const streamed = await readSse(
    await postJson(`${server.url}/v1/chat/completions`, {
      model: MODEL,
      messages: [{ role: "user", content: "z = 4\nprint(z)" }],
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: 40,
      temperature: 0,
    }),
  );
  assert.ok(streamed.done);
  const streamUsage = streamed.chunks.at(-1).usage;
  const streamFinish = streamed.chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0].finish_reason;

  const usages = [...whole.map((r) => r.usage), streamUsage];
  const reasons = [...whole.map((r) => r.choices[0].finish_reason), streamFinish];
  const sum = (f: (u: any) => number) => usages.reduce((s, u) => s + f(u), 0);
  const completion = sum((u) => u.completion_tokens);
  const thoughts = sum((u) => u.completion_tokens_details.reasoning_tokens);
  assert.equal(thoughts, 12, "two latent requests (one by the model's default mode), K = 6 thoughts each");
  assert.ok(reasons.includes("length") && reasons.includes("stop"), JSON.stringify(reasons));

  const gen = await until(`nfcot_generation_tokens_total{model_name="${MODEL}"}`, completion);
  assert.equal(gen.metric.job, "nfcot");
  await until(
    `nfcot_prompt_tokens_total`,
    sum((u) => u.prompt_tokens),
  );
  await until(`nfcot_thoughts_total`, thoughts);
  await until(`nfcot_request_success_total{finished_reason="stop"}`, reasons.filter((r) => r === "stop").length);
  await until(`nfcot_request_success_total{finished_reason="length"}`, reasons.filter((r) => r === "length").length);
  await until(`nfcot_time_to_first_token_seconds_count`, 4);
  await until(`nfcot_e2e_request_latency_seconds_count`, 4);
  await until(`nfcot_request_queue_time_seconds_count`, 4);
  await until(`nfcot_thoughts_per_request_sum`, thoughts);
  await until(
    `nfcot_latent_span_seconds_count`,
    usages.filter((u) => u.completion_tokens_details.reasoning_tokens > 0).length,
  );
  await until(`nfcot_inter_token_latency_seconds_count`, completion - 4);
  // Idle again: nothing running, no KV blocks held.
  await until(`nfcot_num_requests_running`, 0);
  await until(`nfcot_kv_cache_usage_perc`, 0);
  const iterations = await query(`nfcot_iteration_tokens_count`);
  assert.ok(iterations[0]!.value >= completion / 4, "at least one engine step per output of the longest request");
  const [p99] = await query(`histogram_quantile(0.99, sum by (le) (nfcot_time_to_first_token_seconds_bucket))`);
  assert.ok(p99!.value > 0 && p99!.value < 30, `TTFT p99 ${p99!.value}`);

  // Latent scoring: one request, two trajectories.
  const thought = (v: number) => Buffer.from(new Float32Array(16).fill(v).buffer).toString("base64");
  const scored = await postJson(`${server.url}/v1/latent/logprobs`, {
    model: MODEL,
    prompt: "x = 3\nprint(x + 4)",
    trajectories: [{ thoughts: Array(6).fill(thought(0.1)) }, { thoughts: Array(6).fill(thought(-0.2)), answer: "7" }],
  });
  assert.equal(scored.status, 200);
  await until(`nfcot_latent_scoring_requests_total`, 1);
  await until(`nfcot_latent_scoring_trajectories_total`, 2);

  // A failure, by code.
  const missing = await postJson(`${server.url}/v1/chat/completions`, {
    model: "no-such-model",
    messages: [{ role: "user", content: "x" }],
  });
  assert.equal(missing.status, 404);
  await until(`nfcot_request_failure_total{code="model_not_found"}`, 1);
  // Process metrics are scraped too.
  const [rss] = await query(`nfcot_process_resident_memory_bytes`);
  assert.ok(rss!.value > 10e6);
});

test("promtool check metrics finds no problem in /metrics", async () => {
  const res = await fetch(`${server.url}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
  assert.equal(r.error, undefined);
  assert.equal(`${r.stdout}${r.stderr}`.trim(), "", "promtool reports no problems");
  assert.equal(r.status, 0);
});
