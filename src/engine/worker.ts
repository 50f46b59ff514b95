import { parentPort, workerData } from "node:worker_threads";
import { loadManifest } from "../model/manifest.ts";
import { ModelTokenizer } from "../model/tokenizer.ts";
import { BlockManager } from "./block-manager.ts";
import { Engine } from "./engine.ts";
import { engineInfo, type EngineInfo } from "./engine-info.ts";
import { kvPoolBlocks, type EngineOptions } from "./options.ts";
import { Runner } from "./runner.ts";
import { Scheduler } from "./scheduler.ts";
import { loadReplacement } from "./weights.ts";
import type { EngineEvent, EngineRequest, StepRecord } from "./types.ts";

/** The engine's thread: session.run blocks its thread, so it must not be the HTTP thread's. */

export type ToWorker =
  | { type: "add"; req: EngineRequest }
  | { type: "abort"; id: string }
  | { type: "decode"; reqId: number; thoughts: Float32Array[][] }
  /** Weight update, step 1: load a model directory beside the serving one. */
  | { type: "load"; reqId: number; modelDir: string }
  /** Step 2 (sent after "loaded"; requests posted after it carry `version`): swap when drained. */
  | { type: "arm"; reqId: number; version: string }
  | { type: "shutdown" };

export type FromWorker =
  | { type: "ready"; info: EngineInfo }
  | { type: "events"; events: EngineEvent[]; stats: ReturnType<Engine["stats"]>; steps: StepRecord[] }
  | { type: "decoded"; reqId: number; steps: number[][][] | null; error?: string }
  | { type: "loaded"; reqId: number; error?: string }
  | { type: "swapped"; reqId: number; version: string }
  | { type: "fatal"; message: string }
  | { type: "progress"; message: string }
  | { type: "log"; level: "warn" | "error"; message: string; fields: Record<string, unknown> };

const port = parentPort!;
/** The version the weights a server starts with are known by. */
export const INITIAL_VERSION = "v0";
const post = (m: FromWorker) => port.postMessage(m);

async function main(): Promise<void> {
  const opts = workerData as EngineOptions;
  post({ type: "progress", message: `reading ${opts.modelDir}/manifest.json` });
  const manifest = loadManifest(opts.modelDir);
  const tokenizer = new ModelTokenizer(opts.modelDir, manifest, { chat: false });
  const perBlock = Runner.bytesPerBlock(manifest, opts.blockSize);
  const numBlocks = kvPoolBlocks(opts, perBlock);
  post({
    type: "progress",
    message: `loading graphs (${opts.provider}); KV pool ${numBlocks} blocks x ${opts.blockSize} positions (${((numBlocks * perBlock) / 2 ** 20).toFixed(1)} MiB)`,
  });
  const runner = await Runner.create(manifest, { ...opts, numBlocks });
  const blocks = new BlockManager({
    numBlocks,
    blockSize: opts.blockSize,
    enablePrefixCaching: opts.enablePrefixCaching,
  });
  const scheduler = new Scheduler(
    { maxNumSeqs: opts.maxNumSeqs, maxNumBatchedTokens: opts.maxNumBatchedTokens },
    blocks,
  );
  let pending: EngineEvent[] = [];
  const st = manifest.special_tokens;
  const info = engineInfo(manifest, {
    modelDir: opts.modelDir,
    numBlocks,
    blockSize: opts.blockSize,
    provider: opts.provider,
    weightsVersion: INITIAL_VERSION,
  });
  const { maxContext, modelMaxContext } = info;
  if (maxContext < modelMaxContext) {
    post({
      type: "log",
      level: "warn",
      message: `the KV pool holds ${maxContext} positions, less than the model's context of ${modelMaxContext}: serving a max context of ${maxContext} (raise --kv-cache-bytes or --kv-cache-blocks to serve ${modelMaxContext})`,
      fields: { phase: "load", maxContext, modelMaxContext, kvBlocks: numBlocks, blockSize: opts.blockSize },
    });
  }
  const special = {
    ...st,
    eosIds: info.eosTokenIds,
    neverSample: tokenizer.idsWithoutToken(manifest.architecture.vocab_size),
  };
  const engine = new Engine(
    runner,
    scheduler,
    blocks,
    tokenizer,
    special,
    maxContext,
    (e) => pending.push(e),
    Date.now,
    INITIAL_VERSION,
  );
  // A weight update in progress: the loaded runner (between "loaded" and "arm") and who asked.
  let staged: { reqId: number; runner: Runner; modelDir: string } | null = null;
  let swapFor: { reqId: number; modelDir: string } | null = null;
  let serving = { runner, modelDir: opts.modelDir };
  // Every step reports, even one without events (a prefill chunk), so stats and step metrics stay live.
  const flush = () => {
    post({ type: "events", events: pending, stats: engine.stats(), steps: engine.drainStepRecords() });
    pending = [];
  };
  let wake: (() => void) | null = null;
  let stopping = false;
  port.on("message", (m: ToWorker) => {
    if (m.type === "add") {
      // A request the engine refuses (a duplicate id, say) fails alone; the worker goes on.
      try {
        engine.add(m.req);
      } catch (e) {
        pending.push({ type: "error", id: m.req.id, code: "invalid_request", message: (e as Error).message });
      }
    } else if (m.type === "abort") engine.abort(m.id);
    else if (m.type === "shutdown") stopping = true;
    else if (m.type === "load") {
      // Loads while the engine keeps stepping on the serving weights; a failure changes nothing.
      loadReplacement(serving.runner, serving.modelDir, m.modelDir).then(
        (r) => {
          staged = { reqId: m.reqId, runner: r, modelDir: m.modelDir };
          post({ type: "loaded", reqId: m.reqId });
        },
        (e: Error) => post({ type: "loaded", reqId: m.reqId, error: e.message }),
      );
    } else if (m.type === "arm") {
      if (staged?.reqId === m.reqId) {
        engine.armSwap(staged.runner, m.version);
        swapFor = { reqId: m.reqId, modelDir: staged.modelDir };
        staged = null;
      }
    } else if (m.type === "decode") {
      serving.runner.decodeThoughts(m.thoughts).then(
        (steps) => post({ type: "decoded", reqId: m.reqId, steps }),
        (e: Error) => post({ type: "decoded", reqId: m.reqId, steps: null, error: e.message }),
      );
    }
    flush();
    wake?.();
  });
  post({ type: "ready", info });
  flush();
  while (!stopping) {
    const old = engine.swapIfReady();
    if (old) {
      serving = { runner: engine.currentRunner, modelDir: swapFor!.modelDir };
      post({ type: "swapped", reqId: swapFor!.reqId, version: engine.version });
      swapFor = null;
      await old.close();
      continue;
    }
    if (!engine.hasWork) {
      await new Promise<void>((r) => (wake = r));
      wake = null;
      continue;
    }
    try {
      await engine.step();
    } catch (e) {
      const err = e as Error;
      const requestIds = engine.failAll(`engine step failed: ${err.message}`);
      post({
        type: "log",
        level: "error",
        message: "engine step failed: every request in flight failed",
        fields: { requestIds, err: { message: err.message, stack: err.stack } },
      });
    }
    const failed = engine.drainFailures();
    if (failed.length > 0) {
      post({
        type: "log",
        level: "error",
        message: `engine step failed for ${failed.length} request(s); they failed alone, the others go on`,
        fields: {
          requestIds: failed.map((f) => f.id),
          err: { message: failed[0]!.message, stack: failed[0]!.stack },
          errors: failed.map((f) => f.message),
        },
      });
    }
    flush();
    // Let queued messages (new requests, aborts) in between steps.
    await new Promise((r) => setImmediate(r));
  }
  await serving.runner.close();
  process.exit(0);
}

main().catch((e: Error) => {
  post({ type: "fatal", message: e.stack ?? e.message });
  process.exit(1);
});
