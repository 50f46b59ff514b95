import type { AddressInfo } from "node:net";
import { parseArgs } from "node:util";
import { Agent, request } from "undici";
import { toSampling } from "../src/api/sampling.ts";
import { buildApp } from "../src/app.ts";
import { parseConfig } from "../src/config.ts";
import { EngineClient } from "../src/engine/client.ts";
import { engineOptionsFrom } from "../src/engine/options.ts";
import type { GenerateRequest } from "../src/engine/types.ts";
import { loadManifest } from "../src/model/manifest.ts";
import { chatPrompt, type Prompt } from "../src/model/prompt.ts";
import { ModelTokenizer } from "../src/model/tokenizer.ts";
import { SseParser } from "./lib/sse-parser.ts";

/** HTTP overhead, measured side by side in one run on the same engine: text tokens/s of 32
 * concurrent streams through /v1/chat/completions (SSE, parsed by a real client) against the
 * same 32 requests submitted to the EngineClient directly. Same prompts, seeds and max_tokens;
 * ignore_eos makes every request generate exactly max_tokens. Rounds alternate the two modes; the
 * ratio is the median over rounds of http / engine-direct in the same round (adjacent in time, so
 * load from other processes on the machine affects both alike). Target: HTTP >= 80%.
 *
 * The engine runs with 1 intra-op thread by default: on a 2-core machine that leaves a core for
 * the HTTP thread (the same engine serves both modes, so the comparison is like for like).
 *
 *   npx tsx bench/http-bench.ts [--concurrency 32] [--max-tokens 192] [--rounds 7] [--threads 1] */

const { values: args } = parseArgs({
  options: {
    concurrency: { type: "string", default: "32" },
    "max-tokens": { type: "string", default: "192" },
    rounds: { type: "string", default: "7" },
    threads: { type: "string", default: "1" },
  },
});
const C = Number(args.concurrency);
const MAX = Number(args["max-tokens"]);
const ROUNDS = Number(args.rounds);
const MODEL = "nfcot-trace-small";

const programs = Array.from(
  { length: C },
  (_, i) => `a = ${i % 10}\nb = a + ${(i * 7) % 10}\nc = b * ${(i % 3) + 2}\nprint(c)`,
);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

interface Result {
  tokens: number;
  seconds: number;
}

async function engineDirect(engine: EngineClient, prompts: Prompt[], round: number): Promise<Result> {
  const t0 = performance.now();
  const counts = await Promise.all(
    prompts.map(async (prompt, i) => {
      const req: GenerateRequest = {
        kind: "generate",
        id: `bench-${round}-${i}`,
        promptIds: prompt.ids,
        opensLatentSpan: prompt.opensLatentSpan,
        sampling: toSampling({ seed: round * 1000 + i, ignore_eos: true }, MAX, { enabled: false, top: 0 }),
        latent: { temperature: engine.info.defaultLatentTemperature, returnVectors: false },
        choiceIndex: 0,
        leaderId: null,
      };
      let n = 0;
      for await (const e of engine.generate(req)) {
        if (e.type === "finish") n = e.completionTokens;
        else if (e.type === "error") throw new Error(e.message);
      }
      return n;
    }),
  );
  return { tokens: counts.reduce((a, b) => a + b, 0), seconds: (performance.now() - t0) / 1000 };
}

// undici's request API (Node streams) rather than fetch (web streams): a lean client, so the
// measurement is of the server. One keep-alive connection per stream.
const agent = new Agent({ connections: C * 2, keepAliveTimeout: 60_000 });

/** One SSE stream, read to [DONE]; its text tokens come from the usage chunk at the end (the
 * only chunk parsed). */
/** The model's K (set once the server is up). */
let thoughts = 0;

async function oneStream(url: string, content: string, seed: number): Promise<number> {
  const res = await request(`${url}/v1/chat/completions`, {
    method: "POST",
    dispatcher: agent,
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      // The thoughts count inside max_tokens (as OpenAI counts reasoning): MAX text tokens each.
      model: MODEL,
      messages: [{ role: "user", content }],
      max_tokens: MAX + thoughts,
      seed,
      ignore_eos: true,
      stream: true,
      stream_options: { include_usage: true },
    }),
  });
  if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}: ${await res.body.text()}`);
  const sse = new SseParser();
  let textTokens = 0;
  let done = false;
  for await (const chunk of res.body) {
    for (const data of sse.push(chunk)) {
      if (data === "[DONE]") done = true;
      else if (data.includes('"choices":[]')) {
        const { usage } = JSON.parse(data);
        textTokens = usage.completion_tokens - usage.completion_tokens_details.reasoning_tokens;
      }
    }
  }
  if (!done) throw new Error("the stream ended without [DONE]");
  return textTokens;
}

async function viaHttp(url: string, round: number): Promise<Result> {
  const t0 = performance.now();
  const counts = await Promise.all(programs.map((p, i) => oneStream(url, p, round * 1000 + i)));
  return { tokens: counts.reduce((a, b) => a + b, 0), seconds: (performance.now() - t0) / 1000 };
}

// The server as src/server.ts builds it, in this process (the engine-direct side needs its engine).
const config = parseConfig(
  [
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--threads",
    args.threads!,
    "--max-num-seqs",
    `${Math.max(64, C)}`,
    "--max-queue",
    `${Math.max(256, 4 * C)}`,
  ],
  {},
);
const manifest = loadManifest(config.modelDir);
const tok = new ModelTokenizer(config.modelDir, manifest);
const engine = await EngineClient.start(engineOptionsFrom(config));
const app = await buildApp({ config, engine, tokenizer: tok, manifest, logger: false });
await app.listen({ host: config.host, port: config.port });
const server = { engine, url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}` };
try {
  const prompts = programs.map((p) => chatPrompt(tok, engine.info, [{ role: "user", content: p }], { mode: "latent" }));
  thoughts = server.engine.info.numThoughts;
  console.log(
    `model ${MODEL}, ${C} concurrent requests x ${MAX} text tokens (+${server.engine.info.numThoughts} thoughts each), ${ROUNDS} rounds, engine threads ${args.threads}`,
  );
  // Warm-up: graph optimisation, JIT, prefix cache for both paths alike.
  await engineDirect(server.engine, prompts, 0);
  await viaHttp(server.url, 0);

  const direct: number[] = [];
  const http: number[] = [];
  const ratios: number[] = [];
  for (let r = 1; r <= ROUNDS; r++) {
    const d = await engineDirect(server.engine, prompts, r);
    const h = await viaHttp(server.url, r);
    if (d.tokens !== C * MAX || h.tokens !== C * MAX)
      throw new Error(`token counts differ: direct ${d.tokens}, http ${h.tokens}, want ${C * MAX}`);
    direct.push(d.tokens / d.seconds);
    http.push(h.tokens / h.seconds);
    ratios.push(http.at(-1)! / direct.at(-1)!);
    console.log(
      `round ${r}: engine-direct ${direct.at(-1)!.toFixed(0)} tok/s (${d.seconds.toFixed(2)} s), ` +
        `http ${http.at(-1)!.toFixed(0)} tok/s (${h.seconds.toFixed(2)} s), ratio ${(ratios.at(-1)! * 100).toFixed(1)}%`,
    );
  }
  const ratio = median(ratios);
  console.log(`median: engine-direct ${median(direct).toFixed(0)} tok/s, http ${median(http).toFixed(0)} tok/s`);
  console.log(
    `ratio http / engine-direct (median of rounds) = ${(ratio * 100).toFixed(1)}% (target >= 80%): ${ratio >= 0.8 ? "PASS" : "FAIL"}`,
  );
  process.exitCode = ratio >= 0.8 ? 0 : 1;
} finally {
  await agent.close();
  await app.close();
  await engine.close();
}
