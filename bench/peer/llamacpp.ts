/**
 * nfcot-serve against llama.cpp on the same CPU, side by side: the same weights and shapes
 * (GGUF written from the model directory, bench/peer/write_gguf.py), the same prompts (token ids),
 * the same number of generated tokens, alternating rounds. Not part of CI: llama.cpp is built
 * first (bench/peer/build-llamacpp.sh, minutes), and every run takes minutes. Run under the lock:
 *
 *   flock /tmp/heavy.lock bash bench/peer/build-llamacpp.sh
 *   flock /tmp/heavy.lock npx tsx bench/peer/llamacpp.ts --model models/presets/bench [options]
 *
 * --weights fp32,int8,int4   our precisions, each against llama.cpp's F32, Q8_0, Q4_0
 * --kv float32|float16       our KV cache dtype; llama.cpp gets the same (-ctk/-ctv f32 or f16)
 *                            unless --llama-kv says otherwise
 * --llama-kv float32|float16 llama.cpp's KV cache dtype apart from ours: f16 is llama.cpp's default
 *                            and was its fastest attention on the CPU measured, so --kv float32
 *                            --llama-kv float16 compares each server's defaults
 * --llama-fa auto|on|off     llama.cpp's flash attention (-fa; its default, auto, turns it on);
 *                            with f32 K/V that path measured slower than -fa off (README, "Against
 *                            llama.cpp's own defaults"), so a float32-KV comparison should give
 *                            llama.cpp -fa off
 * --block 64                 our int8 / int4 quantization block (nfcot.quantize --block; 64 is its
 *                            default, Q8_0's and Q4_0's bits per weight; 32 is their block; 128
 *                            runs faster; llama.cpp's files stay Q8_0 / Q4_0)
 * --batches 1,32             engine batch sizes and HTTP concurrencies
 * --prompt 32 --gen 64       prompt tokens and generated tokens per sequence
 * --rounds 3                 alternating rounds (median reported; the last column lists each round's
 *                            own ratio: this two-vCPU VM's speed drifts by 20-40% within minutes,
 *                            and a round's two sides run seconds apart)
 * --threads 2                compute threads, both engines
 * --spinning                 our intra-op threads spin between kernels (--thread-spinning), as
 *                            llama.cpp's threads spin-wait at every barrier
 * --no-http / --no-engine    skip a part
 * --floor                    also time our decode step's weight products alone (a graph of only
 *                            them, bench/peer/products_graph.py, through onnxruntime-node with the
 *                            engine's session options), B rows per run, in the engine rounds: the
 *                            "products alone" rows. Their ratio bounds the engine ratio from above:
 *                            where it is below a target, no change to attention, norms, the engine
 *                            or the graph's other nodes reaches that target; only faster products do.
 *                            A second table gives, per decode step, our step, its products alone,
 *                            llama.cpp's step (ms) and the time that leaves for the rest of our
 *                            step at 1.0x and at 1.5x llama.cpp
 *
 * Engine: llama-batched-bench's decode column (S_TG t/s: B x gen tokens over the decode time)
 * against the decode tokens/s of our engine in its worker (B requests at once; from the moment
 * every request has its first token until the last finishes, so prefill is out on both sides).
 * "engine prefill" rows: its S_PP column (B x prompt tokens over the prompt time) against B x
 * prompt tokens over the time until each of our B requests has its first token.
 * HTTP: llama-server against src/server.ts, each as a child process, the same streaming load
 * script (/v1/completions, token-id prompts, stream, ignore_eos, temperature 0): output tokens/s
 * over the run and mean TPOT. Ratio = nfcot-serve / llama.cpp (> 1: we are faster).
 */
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, rmSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import ort from "onnxruntime-node";
import { Agent, request } from "undici";
import { EngineClient } from "../../src/engine/client.ts";
import { DEFAULT_ENGINE_OPTIONS } from "../../src/engine/options.ts";
import { loadManifest } from "../../src/model/manifest.ts";
import { freePort, startServerProcess } from "../lib/server-process.ts";
import { SseParser } from "../lib/sse-parser.ts";
import { greedyTextRequest } from "../lib/decode-step.ts";
import { kvBlocksFor } from "../lib/engine-args.ts";
import { ORT_PYTHON } from "../lib/ort-python.ts";

const { values } = parseArgs({
  options: {
    model: { type: "string", default: "models/presets/bench" },
    weights: { type: "string", default: "fp32,int8,int4" },
    kv: { type: "string", default: "float32" },
    "llama-kv": { type: "string" },
    "llama-fa": { type: "string", default: "auto" },
    block: { type: "string", default: "64" },
    batches: { type: "string", default: "1,32" },
    prompt: { type: "string", default: "32" },
    gen: { type: "string", default: "64" },
    rounds: { type: "string", default: "3" },
    threads: { type: "string", default: "2" },
    spinning: { type: "boolean", default: false },
    "no-http": { type: "boolean", default: false },
    "no-engine": { type: "boolean", default: false },
    floor: { type: "boolean", default: false },
  },
});
const ROOT = resolve(import.meta.dirname, "../..");
const SCRATCH = join(ROOT, "bench/scratch/peer");
const BIN = join(ROOT, "bench/scratch/llamacpp/build/bin");
const model = resolve(values.model!);
const weights = values.weights!.split(",");
const kvDtype = (flag: string, v: string) => {
  if (v !== "float32" && v !== "float16") throw new Error(`--${flag}: float32 or float16, not ${v}`);
  return v;
};
const kv = kvDtype("kv", values.kv!);
const block = Number(values.block);
const batches = values.batches!.split(",").map(Number);
const P = Number(values.prompt);
const G = Number(values.gen);
const ROUNDS = Number(values.rounds);
const T = Number(values.threads);
const GGUF_TYPE: Record<string, string> = { fp32: "F32", int8: "Q8_0", int4: "Q4_0" };
const maxB = Math.max(...batches);
const manifest = loadManifest(model);
const V = manifest.architecture.vocab_size;
// Token ids both engines take as is: plain ids past the placeholder specials (write_gguf.py).
const prompts = Array.from({ length: maxB }, (_, b) =>
  Array.from({ length: P }, (_, i) => 3 + ((b * 7 + i * 13) % (Math.min(V, 240) - 3))),
);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
/** Each round's ratio, ours over theirs, in round order. */
const roundRatios = (ours: number[], theirs: number[]) => ours.map((o, i) => (o / theirs[i]!).toFixed(2)).join(" ");

for (const w of weights)
  if (!GGUF_TYPE[w]) throw new Error(`--weights: ${w} has no llama.cpp counterpart (fp32, int8, int4)`);
for (const b of ["llama-batched-bench", "llama-server"]) {
  if (!existsSync(join(BIN, b))) throw new Error(`${join(BIN, b)} is missing: run bench/peer/build-llamacpp.sh first`);
}
if ((manifest.weights?.dtype ?? "float32") !== "float32" || manifest.kv_cache.dtype !== "float32") {
  throw new Error(`${model}: give a float32 export (weights and KV); this script makes the other precisions`);
}
spawnSync(ORT_PYTHON, ["-c", "import gguf"]).status === 0 ||
  execFileSync(join(ROOT, "models/.venv-ort/bin/pip"), ["install", "-q", "gguf==0.19.0"], { stdio: "inherit" });

/** Our model directory and the GGUF file at one precision (made once, kept in bench/scratch/peer). */
function prepare(w: string): { dir: string; gguf: string } {
  mkdirSync(SCRATCH, { recursive: true });
  const tag = `${manifest.name}-${w}${w.startsWith("int") ? `-b${block}` : ""}-${kv}`;
  const dir = join(SCRATCH, tag);
  if (!existsSync(join(dir, "manifest.json"))) {
    rmSync(dir, { recursive: true, force: true });
    cpSync(model, dir, { recursive: true });
    if (w !== "fp32" || kv !== "float32") {
      const blockArgs = w.startsWith("int") ? ["--block", String(block)] : [];
      execFileSync(ORT_PYTHON, ["-m", "nfcot.quantize", dir, "--weights", w, "--kv-dtype", kv, ...blockArgs], {
        cwd: join(ROOT, "models"),
        stdio: "inherit",
      });
    }
  }
  const gguf = join(SCRATCH, `${manifest.name}-${GGUF_TYPE[w]}.gguf`);
  if (!existsSync(gguf))
    execFileSync(ORT_PYTHON, [join(ROOT, "bench/peer/write_gguf.py"), model, gguf, "--type", GGUF_TYPE[w]!], {
      stdio: "inherit",
    });
  return { dir, gguf };
}

const llamaKv = kvDtype("llama-kv", values["llama-kv"] ?? kv) === "float16" ? "f16" : "f32";
const llamaFa = values["llama-fa"]!;
if (!["auto", "on", "off"].includes(llamaFa)) throw new Error(`--llama-fa: auto, on or off, not ${llamaFa}`);

interface EngineRate {
  /** Decode tokens/s, prefill excluded. */
  decode: number;
  /** Prompt tokens/s: B x prompt tokens over the time until every sequence has its first token. */
  prefill: number;
}

/** llama-batched-bench: decode and prompt tokens/s per batch size (its S_TG and S_PP columns). */
function llamaEngine(gguf: string): Map<number, EngineRate> {
  const ctx = maxB * (P + G) + 64;
  const out = execFileSync(
    join(BIN, "llama-batched-bench"),
    [
      "-m",
      gguf,
      "-c",
      String(ctx),
      "-b",
      "2048",
      "-ub",
      "512",
      "-npp",
      String(P),
      "-ntg",
      String(G),
      // The first row of a run is cold (no warm-up flag in this tool): run the first size twice, keep the last.
      "-npl",
      [batches[0], ...batches].join(","),
      "-t",
      String(T),
      "-tb",
      String(T),
      "-ctk",
      llamaKv,
      "-ctv",
      llamaKv,
      "-fa",
      llamaFa,
    ],
    { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] },
  );
  const res = new Map<number, EngineRate>();
  for (const line of out.split("\n")) {
    const c = line.split("|").map((s) => s.trim());
    // |    PP |     TG |    B |   N_KV |   T_PP s | S_PP t/s |   T_TG s | S_TG t/s |      T s |    S t/s |
    if (c.length >= 10 && c[1] === String(P) && c[2] === String(G) && /^\d+$/.test(c[3]!))
      res.set(Number(c[3]), { decode: Number(c[8]), prefill: Number(c[6]) });
  }
  if (res.size !== batches.length) throw new Error(`could not read llama-batched-bench's table:\n${out}`);
  return res;
}

/** Our engine in its worker, B requests at once: decode tokens/s from the moment every request has
 * its first token, and prompt tokens/s until then. */
async function ourEngine(engine: EngineClient, B: number, tag: string): Promise<EngineRate> {
  let firstAll = 0;
  let started = 0;
  const t0 = performance.now();
  await Promise.all(
    prompts.slice(0, B).map(async (p, b) => {
      let n = 0;
      for await (const e of engine.generate(greedyTextRequest(`${tag}-${b}`, p, G))) {
        if (e.type !== "token") continue;
        if (n++ === 0 && ++started === B) firstAll = performance.now();
      }
      if (n !== G) throw new Error(`request ${b} produced ${n} tokens`);
    }),
  );
  const end = performance.now();
  if (!firstAll) firstAll = t0;
  return { decode: (B * (G - 1)) / ((end - firstAll) / 1000), prefill: (B * P) / ((firstAll - t0) / 1000) };
}

/** Our decode step's weight products alone (bench/peer/products_graph.py, made once per directory). */
function productsGraph(dir: string): string {
  const path = join(dir, "products.onnx");
  if (!existsSync(path))
    execFileSync(ORT_PYTHON, [join(ROOT, "bench/peer/products_graph.py"), dir, path], { stdio: "inherit" });
  return path;
}

/** Tokens/s of the products alone: B rows, G runs after 8 untimed, the engine's session options. */
async function productsAlone(path: string, B: number): Promise<number> {
  const s = await ort.InferenceSession.create(path, {
    executionProviders: ["cpu"],
    graphOptimizationLevel: DEFAULT_ENGINE_OPTIONS.graphOptimization,
    intraOpNumThreads: T,
    interOpNumThreads: 1,
    extra: { session: { intra_op: { allow_spinning: values.spinning ? "1" : "0" } } },
  });
  try {
    const K = s.inputMetadata[0]!;
    const width = K.isTensor ? Number(K.shape[1]) : Number.NaN;
    const x = Float32Array.from({ length: B * width }, (_, i) => Math.sin(i) * 0.5);
    const feeds = { [s.inputNames[0]!]: new ort.Tensor("float32", x, [B, width]) };
    for (let i = 0; i < 8; i++) await s.run(feeds);
    const t0 = performance.now();
    for (let i = 0; i < G; i++) await s.run(feeds);
    return (B * G) / ((performance.now() - t0) / 1000);
  } finally {
    await s.release();
  }
}

interface HttpResult {
  tps: number;
  tpotMs: number;
}
const agent = new Agent({ connections: 2 * maxB + 8, keepAliveTimeout: 60_000 });

/** One streamed completion. Tokens come from the usage chunk (stream_options.include_usage, both
 * servers): a chunk is not a token (a random model may emit tokens with no text, or, on our side,
 * a latent span whose thoughts are generated positions without text). TPOT = (last chunk - first
 * chunk) / (tokens - 1). */
async function oneStream(
  url: string,
  ids: number[],
  modelName: string,
  extra: object,
): Promise<{ tokens: number; tpot: number }> {
  const res = await request(`${url}/v1/completions`, {
    method: "POST",
    dispatcher: agent,
    // A stalled server fails the run instead of hanging it (a 64-token stream takes seconds).
    headersTimeout: 120_000,
    bodyTimeout: 120_000,
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: modelName,
      prompt: ids,
      max_tokens: G,
      temperature: 0,
      ignore_eos: true,
      stream: true,
      stream_options: { include_usage: true },
      ...extra,
    }),
  });
  if (res.statusCode !== 200) throw new Error(`${url}: HTTP ${res.statusCode}: ${await res.body.text()}`);
  const sse = new SseParser();
  let tokens = 0;
  let first = 0;
  let last = 0;
  for await (const chunk of res.body) {
    for (const data of sse.push(chunk)) {
      if (data === "[DONE]") continue;
      const j = JSON.parse(data);
      if (j.usage?.completion_tokens) tokens = j.usage.completion_tokens;
      if (!j.choices?.length) continue;
      last = performance.now();
      if (!first) first = last;
    }
  }
  return { tokens, tpot: (last - first) / Math.max(1, tokens - 1) };
}

async function httpLoad(url: string, C: number, modelName: string, extra: object = {}): Promise<HttpResult> {
  const t0 = performance.now();
  const rs = await Promise.all(prompts.slice(0, C).map((p) => oneStream(url, p, modelName, extra)));
  const s = (performance.now() - t0) / 1000;
  const tokens = rs.reduce((a, r) => a + r.tokens, 0);
  if (rs.some((r) => r.tokens < G))
    throw new Error(`${url}: streams ended early (${rs.map((r) => r.tokens).join(",")} tokens)`);
  return { tps: tokens / s, tpotMs: rs.reduce((a, r) => a + r.tpot, 0) / rs.length };
}

async function startLlamaServer(gguf: string): Promise<{ url: string; stop: () => Promise<void> }> {
  const port = await freePort();
  const child = spawn(
    join(BIN, "llama-server"),
    [
      "-m",
      gguf,
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
      "-t",
      String(T),
      "-tb",
      String(T),
      "-c",
      String(maxB * (P + G + 16)),
      "-np",
      String(maxB),
      "-ctk",
      llamaKv,
      "-ctv",
      llamaKv,
      "-fa",
      llamaFa,
      "--no-webui",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let log = "";
  child.stdout!.on("data", (d) => (log += d));
  child.stderr!.on("data", (d) => (log += d));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`llama-server exited:\n${log.slice(-3000)}`);
    if (
      // Bounded, as the streams below: a run once hung for 16 minutes with llama-server up and idle.
      (await fetch(`${url}/health`, { signal: AbortSignal.timeout(2000) }).then(
        (r) => r.status,
        () => 0,
      )) === 200
    )
      break;
    if (i > 1200) throw new Error(`llama-server not ready:\n${log.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    stop: async () => {
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
    },
  };
}

const load = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(" ");
console.log(
  `# nfcot-serve vs llama.cpp, ${new Date().toISOString()}, ${cpus().length} CPUs, load average at start ${load()}`,
);
console.log(
  `model ${manifest.name} (${model}); prompt ${P}, ${G} generated tokens per sequence; ${T} threads each${values.spinning ? " (ours spinning)" : ""}; our KV ${kv}, llama.cpp KV ${llamaKv} (-fa ${llamaFa}); our int8 / int4 blocks of ${block}; ${ROUNDS} alternating rounds, medians`,
);
const rows: string[] = [];
/** --floor: per decode step, our step, its products alone and llama.cpp's step (ms), and the time
 * left for the rest of our step if the engine is to reach 1.0x / 1.5x llama.cpp (negative: no change
 * outside the products can). */
const floorRows: string[] = [];
for (const w of weights) {
  const { dir, gguf } = prepare(w);
  if (!values["no-engine"]) {
    const engine = await EngineClient.start({
      ...DEFAULT_ENGINE_OPTIONS,
      modelDir: dir,
      threads: T,
      threadSpinning: values.spinning!,
      kvCacheBlocks: kvBlocksFor(maxB, P + G + 2, 16).total,
      blockSize: 16,
      enablePrefixCaching: false,
      maxNumSeqs: maxB,
      maxNumBatchedTokens: Math.max(2048, maxB * P),
    });
    await ourEngine(engine, 1, "warm");
    const products = values.floor ? productsGraph(dir) : "";
    const ours = new Map<number, EngineRate[]>();
    const theirs = new Map<number, EngineRate[]>();
    const alone = new Map<number, number[]>();
    for (let r = 0; r < ROUNDS; r++) {
      for (const B of batches) (ours.get(B) ?? ours.set(B, []).get(B)!).push(await ourEngine(engine, B, `r${r}-${B}`));
      if (products)
        for (const B of batches) (alone.get(B) ?? alone.set(B, []).get(B)!).push(await productsAlone(products, B));
      for (const [B, rate] of llamaEngine(gguf)) (theirs.get(B) ?? theirs.set(B, []).get(B)!).push(rate);
    }
    await engine.close();
    for (const part of ["decode", "prefill", "products"] as const) {
      if (part === "products" && !products) continue;
      for (const B of batches) {
        const os = part === "products" ? alone.get(B)! : ours.get(B)!.map((x) => x[part]);
        const ts = theirs.get(B)!.map((x) => x[part === "products" ? "decode" : part]);
        const [o, t] = [median(os), median(ts)];
        const path = { decode: "engine", prefill: "engine prefill", products: "products alone" }[part];
        rows.push(
          `| ${w} vs ${GGUF_TYPE[w]} | ${path} | ${B} | ${o.toFixed(0)} | ${t.toFixed(0)} | ${(o / t).toFixed(2)} | ${roundRatios(os, ts)} |`,
        );
        console.log(rows.at(-1));
      }
    }
    if (products)
      for (const B of batches) {
        const ms = (tokPerS: number[]) => (B / median(tokPerS)) * 1000;
        const step = ms(ours.get(B)!.map((x) => x.decode));
        const prod = ms(alone.get(B)!);
        const peer = ms(theirs.get(B)!.map((x) => x.decode));
        floorRows.push(
          `| ${w} vs ${GGUF_TYPE[w]} | ${B} | ${[step, prod, step - prod, peer, peer - prod, peer / 1.5 - prod].map((x) => x.toFixed(2)).join(" | ")} |`,
        );
      }
  }
  if (!values["no-http"]) {
    const ours = new Map<number, HttpResult[]>();
    const theirs = new Map<number, HttpResult[]>();
    for (let r = 0; r < ROUNDS; r++) {
      const s = await startServerProcess({
        NFCOT_MODEL_DIR: dir,
        NFCOT_THREADS: String(T),
        NFCOT_THREAD_SPINNING: String(values.spinning!),
        NFCOT_MAX_NUM_SEQS: String(Math.max(64, maxB)),
        NFCOT_ENABLE_PREFIX_CACHING: "false",
        // The positions llama-server gets (-c below): the default 256 MiB pool holds only about 12
        // sequences of the Qwen3-0.6B shape, and the rest of a 32-stream load waited in the queue.
        NFCOT_KV_CACHE_BLOCKS: String(kvBlocksFor(maxB, P + G + 16, 16).total),
      });
      try {
        await httpLoad(s.url, 1, manifest.name);
        for (const C of batches) (ours.get(C) ?? ours.set(C, []).get(C)!).push(await httpLoad(s.url, C, manifest.name));
      } finally {
        await s.stop();
      }
      const l = await startLlamaServer(gguf);
      try {
        // Prompt caching off, as on our side (NFCOT_ENABLE_PREFIX_CACHING=false): every round prefills.
        await httpLoad(l.url, 1, "x", { cache_prompt: false });
        for (const C of batches)
          (theirs.get(C) ?? theirs.set(C, []).get(C)!).push(await httpLoad(l.url, C, "x", { cache_prompt: false }));
      } finally {
        await l.stop();
      }
    }
    for (const C of batches) {
      const o = ours.get(C)!;
      const t = theirs.get(C)!;
      const os = o.map((x) => x.tps);
      const ts = t.map((x) => x.tps);
      const [ot, tt] = [median(os), median(ts)];
      rows.push(
        `| ${w} vs ${GGUF_TYPE[w]} | HTTP | ${C} | ${ot.toFixed(0)} (TPOT ${median(o.map((x) => x.tpotMs)).toFixed(2)} ms) | ${tt.toFixed(0)} (TPOT ${median(t.map((x) => x.tpotMs)).toFixed(2)} ms) | ${(ot / tt).toFixed(2)} | ${roundRatios(os, ts)} |`,
      );
      console.log(rows.at(-1));
    }
  }
}
await agent.close();
console.log(
  `\n| precision | path | batch / concurrency | nfcot-serve tok/s | llama.cpp tok/s | ratio | each round's ratio |`,
);
console.log("|---|---|---|---|---|---|---|");
for (const r of rows) console.log(r);
if (floorRows.length > 0) {
  console.log(
    "\n| precision | batch | our decode step, ms | its products alone, ms | the rest of our step, ms | llama.cpp's step, ms | room for the rest at 1.0x, ms | at 1.5x, ms |",
  );
  console.log("|---|---|---|---|---|---|---|---|");
  for (const r of floorRows) console.log(r);
}
console.log(`load average at end ${load()}`);
