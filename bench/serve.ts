import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { Agent, request } from "undici";
import { fail, isNonNegativeInt, isPositiveInt, numberArg, parseCli } from "./lib/cli.ts";
import { runLoad } from "./lib/load.ts";
import { poissonArrivals } from "./lib/poisson.ts";
import { Progress } from "./lib/progress.ts";
import { startServerProcess, type ServerProcess } from "./lib/server-process.ts";
import { computeServeMetrics, tpotOf, type Slo } from "./lib/serve-metrics.ts";
import { streamChatCompletion, type StreamOutcome } from "./lib/sse-client.ts";
import { keyValueTable, toJson } from "./lib/table.ts";
import { loadTestSplit, takePrograms } from "./lib/test-split.ts";

const USAGE = `Serving benchmark (in the spirit of vLLM's \`bench serve\`): streamed chat completions with
prompts from the task's test split, sent as a Poisson process at --request-rate and/or under a
--max-concurrency cap. Reports TTFT, TPOT, ITL and end-to-end latency (mean, median, p99),
request and token throughput, and goodput under the SLOs given. Progress goes to stderr, the
table to stdout, everything (per request too) to --out.

  npm run bench -- [options]

  --url URL              server to measure; absent: start \`src/server.ts\` on the shipped model
                         on a free port (a child process, stopped at the end)
  --server-args=ARGS     flags for that server, e.g. --server-args="--kv-cache-blocks 1024 --threads 2"
  --model NAME           default: the first model of GET /v1/models
  --num-prompts N        default 200
  --request-rate R       requests/s (Poisson); inf = all at once (default inf)
  --max-concurrency C    requests in flight at most (default: no cap)
  --mode M               none | explicit | latent (default: the model's default mode)
  --max-tokens N         text tokens per request (default: until EOS, within the context)
  --ignore-eos           generate exactly --max-tokens text tokens
  --temperature T        default 0 (greedy)
  --seed S               Poisson schedule and per-request seeds (seed + i); default 0
  --slo-ttft-ms MS, --slo-tpot-ms MS, --slo-e2e-ms MS   goodput: requests/s meeting all given
  --api-key KEY          sent as a bearer token
  --out FILE             JSON result (default: none)

Definitions: a chunk is an SSE event carrying output, a text delta or an NF-CoT thought; TTFT
runs to the first one; ITL is every gap between chunks; TPOT = (E2E - TTFT) / (output tokens -
1) with output tokens = usage.completion_tokens (thoughts included) from the final usage chunk.`;

const a = parseCli(
  {
    url: { type: "string" },
    "server-args": { type: "string", default: "" },
    model: { type: "string" },
    "num-prompts": { type: "string", default: "200" },
    "request-rate": { type: "string", default: "inf" },
    "max-concurrency": { type: "string" },
    mode: { type: "string" },
    "max-tokens": { type: "string" },
    "ignore-eos": { type: "boolean", default: false },
    temperature: { type: "string", default: "0" },
    seed: { type: "string", default: "0" },
    "slo-ttft-ms": { type: "string" },
    "slo-tpot-ms": { type: "string" },
    "slo-e2e-ms": { type: "string" },
    "api-key": { type: "string" },
    out: { type: "string" },
  },
  USAGE,
);
const num = (name: keyof typeof a & string, valid?: (x: number) => boolean) =>
  numberArg(USAGE, name, a[name] as string | undefined, valid);
const numPrompts = num("num-prompts", isPositiveInt)!;
const rate = num("request-rate", (x) => x > 0)!;
const maxConcurrency = num("max-concurrency", isPositiveInt) ?? null;
const maxTokens = num("max-tokens", isPositiveInt);
const temperature = num("temperature")!;
const seed = num("seed", isNonNegativeInt)!;
const slo: Slo = {
  ...(a["slo-ttft-ms"] !== undefined ? { ttftMs: num("slo-ttft-ms")! } : {}),
  ...(a["slo-tpot-ms"] !== undefined ? { tpotMs: num("slo-tpot-ms")! } : {}),
  ...(a["slo-e2e-ms"] !== undefined ? { e2eMs: num("slo-e2e-ms")! } : {}),
};
if (a.mode !== undefined && !["none", "explicit", "latent"].includes(a.mode))
  fail(USAGE, `--mode: expected none, explicit or latent, got ${a.mode}`);

let server: ServerProcess | null = null;
if (!a.url) {
  process.stderr.write("no --url: starting src/server.ts on the shipped model ...\n");
  server = await startServerProcess({}, (a["server-args"] ?? "").split(/\s+/).filter(Boolean));
}
const url = (a.url ?? server!.url).replace(/\/$/, "");
const headers: Record<string, string> = a["api-key"] ? { authorization: `Bearer ${a["api-key"]}` } : {};
// One keep-alive connection per request in flight: the client never queues what the benchmark
// means to have in flight (no cap: as many as the schedule opens).
const agent = new Agent({ connections: maxConcurrency, keepAliveTimeout: 60_000, keepAliveMaxTimeout: 600_000 });

try {
  const models = await request(`${url}/v1/models`, { dispatcher: agent, headers });
  if (models.statusCode !== 200)
    throw new Error(`GET /v1/models: HTTP ${models.statusCode}: ${await models.body.text()}`);
  const model = a.model ?? ((await models.body.json()) as { data: { id: string }[] }).data[0]!.id;
  if (a.model) await models.body.dump();

  const programs = takePrograms(loadTestSplit(), numPrompts);
  const bodyFor = (i: number): Record<string, unknown> => ({
    model,
    messages: [{ role: "user", content: programs[i]!.source }],
    temperature,
    seed: seed + i,
    ...(maxTokens !== undefined ? { max_tokens: maxTokens } : {}),
    ...(a["ignore-eos"] ? { ignore_eos: true } : {}),
    ...(a.mode ? { reasoning: { mode: a.mode } } : {}),
  });

  // One request first, as vLLM does: a wrong model, mode or key fails here, not 200 times.
  const probe = await streamChatCompletion(url, bodyFor(0), { dispatcher: agent, headers });
  if (!probe.ok) throw new Error(`the test request failed: ${probe.error}`);

  const rateText = rate === Infinity ? "inf" : String(rate);
  process.stderr.write(
    `${url} model ${model}, mode ${a.mode ?? "(model default)"}, ${numPrompts} prompts, request rate ${rateText}, ` +
      `max concurrency ${maxConcurrency ?? "none"}\n`,
  );
  const progress = new Progress("bench", numPrompts);
  const { results, durationMs } = await runLoad<StreamOutcome>({
    arrivalsMs: poissonArrivals(numPrompts, rate, seed),
    maxConcurrency,
    send: (i) => streamChatCompletion(url, bodyFor(i), { dispatcher: agent, headers }),
    onDone: (_i, r) => progress.tick(r.ok),
  });
  progress.finish();

  const m = computeServeMetrics(results, durationMs / 1000, slo);
  const sloText = Object.entries(slo)
    .map(([k, v]) => `${k.replace(/Ms$/, "")} <= ${v} ms`)
    .join(", ");
  const rows: ([string, number | string | null] | string)[] = [
    ["Successful requests:", m.completed],
    ["Failed requests:", m.failed],
    ["Request rate (req/s):", rateText],
    ["Max concurrency:", maxConcurrency ?? "none"],
    ["Benchmark duration (s):", m.durationS],
    ["Total input tokens:", m.totalInputTokens],
    ["Total generated tokens:", m.totalOutputTokens],
    ["  of which thoughts:", m.totalReasoningTokens],
    ["Request throughput (req/s):", m.requestThroughput],
    ...(m.goodput !== null ? [["Request goodput (req/s):", m.goodput] as [string, number]] : []),
    ["Output token throughput (tok/s):", m.outputTokenThroughput],
    ["Total token throughput (tok/s):", m.totalTokenThroughput],
  ];
  for (const [title, key, s] of [
    ["Time to First Token", "TTFT", m.ttftMs],
    ["Time per Output Token (excl. 1st token)", "TPOT", m.tpotMs],
    ["Inter-token Latency", "ITL", m.itlMs],
    ["End-to-end Latency", "E2EL", m.e2eMs],
  ] as const) {
    rows.push(title, [`Mean ${key} (ms):`, s.mean], [`Median ${key} (ms):`, s.median], [`P99 ${key} (ms):`, s.p99]);
  }
  console.log(keyValueTable("Serving Benchmark Result", rows));
  if (sloText) console.log(`goodput SLOs: ${sloText} (${m.goodRequests} of ${m.completed} requests met them)`);
  for (const e of m.errors) console.log(`failed x${e.count}: ${e.message}`);

  if (a.out) {
    const result = {
      date: new Date().toISOString(),
      url,
      startedServer: server !== null,
      serverArgs: server ? a["server-args"] : null,
      model,
      config: {
        numPrompts,
        requestRate: rate,
        maxConcurrency,
        mode: a.mode ?? null,
        maxTokens: maxTokens ?? null,
        ignoreEos: a["ignore-eos"],
        temperature,
        seed,
        slo,
      },
      metrics: m,
      requests: results.map((r, i) => ({
        index: i,
        ok: r.ok,
        error: r.error,
        ttftMs: r.ttftMs,
        tpotMs: tpotOf(r),
        e2eMs: r.e2eMs,
        itlMs: r.itlMs,
        promptTokens: r.usage?.prompt_tokens ?? null,
        outputTokens: r.usage?.completion_tokens ?? null,
        reasoningTokens: r.usage?.completion_tokens_details?.reasoning_tokens ?? null,
        finishReason: r.finishReason,
      })),
    };
    mkdirSync(dirname(a.out), { recursive: true });
    writeFileSync(a.out, `${toJson(result)}\n`);
    process.stderr.write(`wrote ${a.out}\n`);
  }
  if (m.completed === 0) process.exitCode = 1;
} finally {
  await agent.close();
  if (server) await server.stop();
}
