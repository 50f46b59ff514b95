import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { Agent } from "undici";
import { answerLine, parseAnswer } from "./lib/answer.ts";
import { isNonNegativeInt, isPositiveInt, numberArg, parseCli } from "./lib/cli.ts";
import { fetchJson } from "./lib/http-json.ts";
import { Progress } from "./lib/progress.ts";
import { startServerProcess, type ServerProcess } from "./lib/server-process.ts";
import type { Usage } from "./lib/sse-client.ts";
import { mean, mode as majority, summarize, type Summary } from "./lib/stats.ts";
import { gridTable, toJson } from "./lib/table.ts";
import { loadTestSplit, takePrograms, type TestProgram } from "./lib/test-split.ts";

const USAGE = `Reasoning cost, NF-CoT's headline comparison on our model: the same test-split prompts answered
in modes none, explicit and latent (greedy text; latent thoughts at T_z = 0 and at the model's
default T_z, seeded), one request at a time (time to answer = the request's wall time, no
batching effects) and then at --concurrency. Reports accuracy (the integer on the reply's last
line against the program's answer), the majority-answer baseline, reasoning positions per answer
(thoughts + trace tokens: text before the answer line, less the newline before it, as
models/nfcot/evaluate.py counts them), generated positions, time to answer (mean / median /
p99), the explicit / latent time ratio, and the same ratio of the time beyond mode none's (what
answering costs without reasoning: HTTP, prefill, the answer). Target: latent (T_z = 0) at least --time-target times
faster than explicit, with accuracy no more than --accuracy-bound below explicit's. Exit code 1
when the target is missed.

  npm run bench:reasoning -- [options]

  --url URL              server to measure; absent: start src/server.ts on the shipped model
  --server-args=ARGS     flags for that server
  --model NAME           default: the first model of GET /v1/models
  --num-prompts N        default 200 (the first N programs of models/data/test.jsonl)
  --concurrency C        the second pass (default 8; 0 skips it)
  --max-tokens N         text tokens per answer at most (default 128)
  --seed S               seeds of the sampled-thought condition (seed + prompt index); default 0
  --warmup N             requests per condition before measuring, on other prompts (default 4)
  --accuracy-bound B     default 0.05 (absolute)
  --time-target X        default 3
  --out FILE             JSON result`;

const a = parseCli(
  {
    url: { type: "string" },
    "server-args": { type: "string", default: "" },
    model: { type: "string" },
    "num-prompts": { type: "string", default: "200" },
    concurrency: { type: "string", default: "8" },
    "max-tokens": { type: "string", default: "128" },
    seed: { type: "string", default: "0" },
    warmup: { type: "string", default: "4" },
    "accuracy-bound": { type: "string", default: "0.05" },
    "time-target": { type: "string", default: "3" },
    out: { type: "string" },
  },
  USAGE,
);
const num = (name: keyof typeof a & string, valid?: (x: number) => boolean) =>
  numberArg(USAGE, name, a[name] as string | undefined, valid)!;
const N = num("num-prompts", isPositiveInt);
const C = num("concurrency", isNonNegativeInt);
const maxTokens = num("max-tokens", isPositiveInt);
const seed = num("seed", isNonNegativeInt);
const warmup = num("warmup", isNonNegativeInt);
const accuracyBound = num("accuracy-bound");
const timeTarget = num("time-target", (x) => x > 0);

type Mode = "none" | "explicit" | "latent";
interface Condition {
  name: string;
  mode: Mode;
  /** Sent as reasoning.latent_temperature; null: left out (the server's default: 0 with greedy text). */
  latentTemperature: number | null;
}

interface Answer {
  prompt: number;
  ms: number;
  error: string | null;
  text: string;
  answer: number | null;
  correct: boolean;
  generated: number;
  thoughts: number;
  traceTokens: number;
}

interface ConditionResult {
  condition: string;
  answered: number;
  failed: number;
  accuracy: number;
  reasoningPositions: number;
  thoughts: number;
  traceTokens: number;
  generatedPositions: number;
  timeMs: Summary;
  /** Concurrent pass: answers per second of wall time over this condition's batches. */
  answersPerS: number | null;
}

let server: ServerProcess | null = null;
if (!a.url) {
  process.stderr.write("no --url: starting src/server.ts on the shipped model ...\n");
  server = await startServerProcess({}, a["server-args"]!.split(/\s+/).filter(Boolean));
}
const url = (a.url ?? server!.url).replace(/\/$/, "");
const agent = new Agent({ connections: Math.max(1, C), keepAliveTimeout: 60_000 });

try {
  const models = await fetchJson<{ data: { id: string; nfcot?: { default_latent_temperature?: number } }[] }>(
    `${url}/v1/models`,
    { dispatcher: agent },
  );
  if (models.status !== 200) throw new Error(`GET /v1/models: HTTP ${models.status}`);
  const modelInfo = (a.model ? models.body.data.find((m) => m.id === a.model) : models.body.data[0]) ?? {
    id: a.model!,
    nfcot: {},
  };
  const model = modelInfo.id;
  const defaultTz = modelInfo.nfcot?.default_latent_temperature ?? null;
  const conditions: Condition[] = [
    { name: "none", mode: "none", latentTemperature: 0 },
    { name: "explicit", mode: "explicit", latentTemperature: 0 },
    { name: "latent T_z=0", mode: "latent", latentTemperature: 0 },
    // The model's default T_z, sent: with greedy text an omitted latent_temperature means 0 (thoughts
    // sampled only when asked), which made this condition repeat the one above. Seeded per prompt.
    { name: `latent T_z=${defaultTz ?? "default"}`, mode: "latent", latentTemperature: defaultTz },
  ];
  const [NONE, EXPLICIT, LATENT0, LATENTD] = conditions.map((c) => c.name) as [string, string, string, string];

  const split = loadTestSplit();
  const programs = takePrograms(split, N);
  const warmupPrograms = takePrograms(split, warmup, N);
  const base = majority(programs.map((p) => p.answer));
  const baseline = base.count / N;

  // Tokens of an answer line, from the server's own tokenizer (cached: answers repeat a lot).
  const lineTokens = new Map<string, Promise<number>>();
  const tokensOf = (line: string): Promise<number> => {
    if (line === "") return Promise.resolve(0);
    let p = lineTokens.get(line);
    if (!p) {
      p = fetchJson<{ count: number }>(`${url}/tokenize`, { body: { model, prompt: line }, dispatcher: agent }).then(
        (r) => {
          if (r.status !== 200) throw new Error(`/tokenize: HTTP ${r.status}`);
          return r.body.count;
        },
      );
      lineTokens.set(line, p);
    }
    return p;
  };

  async function ask(c: Condition, p: TestProgram, index: number): Promise<Answer> {
    const reasoning = {
      mode: c.mode,
      ...(c.latentTemperature !== null ? { latent_temperature: c.latentTemperature } : {}),
    };
    const r = await fetchJson<{
      choices?: { message: { content: string } }[];
      usage?: Usage;
      error?: { message: string };
    }>(`${url}/v1/chat/completions`, {
      body: {
        model,
        messages: [{ role: "user", content: p.source }],
        temperature: 0,
        max_tokens: maxTokens,
        seed: seed + index,
        reasoning,
      },
      dispatcher: agent,
    });
    const text = r.body.choices?.[0]?.message.content ?? "";
    const usage = r.body.usage;
    const error =
      r.status === 200 && usage
        ? null
        : `HTTP ${r.status}: ${r.body.error?.message ?? JSON.stringify(r.body).slice(0, 200)}`;
    const thoughts = usage?.completion_tokens_details?.reasoning_tokens ?? 0;
    const textTokens = (usage?.completion_tokens ?? 0) - thoughts;
    const { line, hasLinesBefore } = answerLine(text);
    const traceTokens = Math.max(0, textTokens - (await tokensOf(line)) - (hasLinesBefore ? 1 : 0));
    const answer = parseAnswer(text);
    return {
      prompt: index,
      ms: r.ms,
      error,
      text,
      answer,
      correct: error === null && answer === p.answer,
      generated: usage?.completion_tokens ?? 0,
      thoughts,
      traceTokens,
    };
  }

  const rotate = <T>(xs: T[], k: number) => xs.map((_, j) => xs[(j + k) % xs.length]!);

  function summarizeCondition(c: Condition, answers: Answer[], wallMs: number | null): ConditionResult {
    const ok = answers.filter((x) => x.error === null);
    const thoughts = mean(ok.map((x) => x.thoughts));
    const trace = mean(ok.map((x) => x.traceTokens));
    return {
      condition: c.name,
      answered: ok.length,
      failed: answers.length - ok.length,
      accuracy: answers.filter((x) => x.correct).length / answers.length,
      reasoningPositions: thoughts + trace,
      thoughts,
      traceTokens: trace,
      generatedPositions: mean(ok.map((x) => x.generated)),
      timeMs: summarize(ok.map((x) => x.ms)),
      answersPerS: wallMs === null ? null : ok.length / (wallMs / 1000),
    };
  }

  for (const c of conditions) for (let i = 0; i < warmupPrograms.length; i++) await ask(c, warmupPrograms[i]!, N + i);

  // Pass 1, one at a time. Conditions take turns per prompt (rotated) so that drift in the
  // machine's load and the prefix cache (a prompt's program is cached after its first mode)
  // fall on every condition alike.
  const sequential = new Map(conditions.map((c) => [c.name, [] as Answer[]]));
  let progress = new Progress("sequential", N * conditions.length);
  for (let i = 0; i < N; i++) {
    for (const c of rotate(conditions, i % conditions.length)) {
      const ans = await ask(c, programs[i]!, i);
      sequential.get(c.name)!.push(ans);
      progress.tick(ans.error === null);
    }
  }
  progress.finish();
  const phases: { name: string; concurrency: number; results: ConditionResult[]; answers: Record<string, Answer[]> }[] =
    [
      {
        name: "sequential",
        concurrency: 1,
        results: conditions.map((c) => summarizeCondition(c, sequential.get(c.name)!, null)),
        answers: Object.fromEntries(sequential),
      },
    ];

  // Pass 2, C requests in flight, one condition at a time (batches of one mode, as a server
  // dedicated to it would see), in blocks of 5C prompts with the conditions taking turns.
  if (C > 0) {
    const concurrent = new Map(conditions.map((c) => [c.name, [] as Answer[]]));
    const wall = new Map(conditions.map((c) => [c.name, 0]));
    progress = new Progress(`concurrency ${C}`, N * conditions.length);
    const block = 5 * C;
    for (let b = 0; b * block < N; b++) {
      const indices = Array.from({ length: Math.min(block, N - b * block) }, (_, j) => b * block + j);
      for (const c of rotate(conditions, b % conditions.length)) {
        const queue = [...indices];
        const t0 = performance.now();
        await Promise.all(
          Array.from({ length: C }, async () => {
            for (let i = queue.shift(); i !== undefined; i = queue.shift()) {
              const ans = await ask(c, programs[i]!, i);
              concurrent.get(c.name)!.push(ans);
              progress.tick(ans.error === null);
            }
          }),
        );
        wall.set(c.name, wall.get(c.name)! + performance.now() - t0);
      }
    }
    progress.finish();
    for (const list of concurrent.values()) list.sort((x, y) => x.prompt - y.prompt);
    phases.push({
      name: `concurrency ${C}`,
      concurrency: C,
      results: conditions.map((c) => summarizeCondition(c, concurrent.get(c.name)!, wall.get(c.name)!)),
      answers: Object.fromEntries(concurrent),
    });
  }

  console.log(`model ${model} at ${url}; ${N} test-split prompts, greedy text, max_tokens ${maxTokens}`);
  console.log(`majority-answer baseline: ${baseline.toFixed(3)} (answer ${base.value}, ${base.count} of ${N})\n`);
  const ratios: Record<
    string,
    { meanRatio: number; medianRatio: number; defaultTzMeanRatio: number; beyondNoneMeanRatio: number | null }
  > = {};
  for (const ph of phases) {
    console.log(`${ph.name}:`);
    console.log(
      gridTable(
        [
          "condition",
          "accuracy",
          "reasoning pos",
          "thoughts",
          "trace tok",
          "generated",
          "mean ms",
          "median ms",
          "p99 ms",
          ...(ph.concurrency > 1 ? ["answers/s"] : []),
          "failed",
        ],
        ph.results.map((r) => [
          r.condition,
          r.accuracy,
          r.reasoningPositions,
          r.thoughts,
          r.traceTokens,
          r.generatedPositions,
          r.timeMs.mean,
          r.timeMs.median,
          r.timeMs.p99,
          ...(ph.concurrency > 1 ? [r.answersPerS] : []),
          r.failed,
        ]),
      ),
    );
    const by = (name: string) => ph.results.find((r) => r.condition === name)!;
    // Time beyond answering without reasoning (mode none: prefill, HTTP, the answer itself) is
    // what the reasoning costs; on a small model that floor is a large share of every request.
    const floor = by(NONE).timeMs.mean;
    const beyondLatent = by(LATENT0).timeMs.mean - floor;
    const ratio = {
      meanRatio: by(EXPLICIT).timeMs.mean / by(LATENT0).timeMs.mean,
      medianRatio: by(EXPLICIT).timeMs.median / by(LATENT0).timeMs.median,
      defaultTzMeanRatio: by(EXPLICIT).timeMs.mean / by(LATENTD).timeMs.mean,
      beyondNoneMeanRatio: beyondLatent > 0 ? (by(EXPLICIT).timeMs.mean - floor) / beyondLatent : null,
    };
    ratios[ph.name] = ratio;
    console.log(
      `time to answer, explicit / latent: ${ratio.meanRatio.toFixed(2)}x mean, ${ratio.medianRatio.toFixed(2)}x median ` +
        `(T_z = 0); ${ratio.defaultTzMeanRatio.toFixed(2)}x mean (${LATENTD}); time beyond mode none's ` +
        `${floor.toFixed(1)} ms: ${ratio.beyondNoneMeanRatio === null ? "-" : `${ratio.beyondNoneMeanRatio.toFixed(2)}x`} mean\n`,
    );
  }
  const seq = phases[0]!.results;
  const accExplicit = seq.find((r) => r.condition === EXPLICIT)!.accuracy;
  const accLatent = seq.find((r) => r.condition === LATENT0)!.accuracy;
  const timeOk = ratios["sequential"]!.meanRatio >= timeTarget;
  const accOk = accLatent >= accExplicit - accuracyBound;
  const pass = timeOk && accOk;
  console.log(
    `target: latent (T_z = 0) >= ${timeTarget}x faster than explicit (sequential mean: ${ratios["sequential"]!.meanRatio.toFixed(2)}x, ${timeOk ? "met" : "missed"}) ` +
      `at accuracy >= explicit - ${accuracyBound} (${accLatent.toFixed(3)} vs ${accExplicit.toFixed(3)}, ${accOk ? "met" : "missed"}): ${pass ? "PASS" : "FAIL"}`,
  );

  if (a.out) {
    const result = {
      date: new Date().toISOString(),
      url,
      startedServer: server !== null,
      model,
      config: {
        numPrompts: N,
        concurrency: C,
        maxTokens,
        seed,
        warmup,
        accuracyBound,
        timeTarget,
        defaultLatentTemperature: defaultTz,
      },
      majorityBaseline: { accuracy: baseline, answer: base.value, count: base.count },
      phases: phases.map((ph) => ({
        name: ph.name,
        concurrency: ph.concurrency,
        results: ph.results,
        ratios: ratios[ph.name],
        answers: ph.answers,
      })),
      target: { timeOk, accuracyOk: accOk, pass },
    };
    mkdirSync(dirname(a.out), { recursive: true });
    writeFileSync(a.out, `${toJson(result)}\n`);
    process.stderr.write(`wrote ${a.out}\n`);
  }
  process.exitCode = pass ? 0 : 1;
} finally {
  await agent.close();
  if (server) await server.stop();
}
