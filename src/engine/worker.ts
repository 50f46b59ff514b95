import { parentPort, workerData } from "node:worker_threads";
import { eosTokenIds, loadManifest } from "../model/manifest.ts";
import { ModelTokenizer } from "../model/tokenizer.ts";
import { BlockManager } from "./block-manager.ts";
import { Engine } from "./engine.ts";
import { modelInfoFrom } from "./model-info.ts";
import type { EngineOptions, ModelInfo } from "./options.ts";
import { Runner } from "./runner.ts";
import { Scheduler } from "./scheduler.ts";
import type { EngineEvent, EngineRequest, StepRecord } from "./types.ts";

/** The engine's thread: session.run blocks its thread, so it must not be the HTTP thread's. */

export type ToWorker =
  | { type: "add"; req: EngineRequest }
  | { type: "abort"; id: string }
  | { type: "decode"; reqId: number; thoughts: Float32Array[][] }
  | { type: "shutdown" };

export type FromWorker =
  | { type: "ready"; info: ModelInfo }
  | { type: "events"; events: EngineEvent[]; stats: ReturnType<Engine["stats"]>; steps: StepRecord[] }
  | { type: "decoded"; reqId: number; steps: number[][][] | null; error?: string }
  | { type: "fatal"; message: string }
  | { type: "progress"; message: string };

const port = parentPort!;
const post = (m: FromWorker) => port.postMessage(m);

async function main(): Promise<void> {
  const opts = workerData as EngineOptions;
  post({ type: "progress", message: `reading ${opts.modelDir}/manifest.json` });
  const manifest = loadManifest(opts.modelDir);
  const tokenizer = new ModelTokenizer(opts.modelDir, manifest, { chat: false });
  const perBlock = Runner.bytesPerBlock(manifest, opts.blockSize);
  const numBlocks = opts.numBlocks ?? Math.max(1, Math.floor(opts.kvCacheBytes / perBlock));
  post({ type: "progress", message: `loading graphs (${opts.provider}); KV pool ${numBlocks} blocks x ${opts.blockSize} positions (${((numBlocks * perBlock) / 2 ** 20).toFixed(1)} MiB)` });
  const runner = await Runner.create(manifest, { ...opts, numBlocks });
  const blocks = new BlockManager({ numBlocks, blockSize: opts.blockSize, enablePrefixCaching: opts.enablePrefixCaching });
  const scheduler = new Scheduler({ maxNumSeqs: opts.maxNumSeqs, maxNumBatchedTokens: opts.maxNumBatchedTokens }, blocks);
  let pending: EngineEvent[] = [];
  const st = manifest.special_tokens;
  const maxContext = Math.min(manifest.max_context, manifest.architecture.max_position);
  const special = { ...st, eosIds: eosTokenIds(manifest), neverSample: tokenizer.idsWithoutToken(manifest.architecture.vocab_size) };
  const engine = new Engine(runner, scheduler, blocks, tokenizer, special, maxContext, (e) => pending.push(e));
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
    }
    else if (m.type === "abort") engine.abort(m.id);
    else if (m.type === "shutdown") stopping = true;
    else if (m.type === "decode") {
      runner.decodeThoughts(m.thoughts).then(
        (steps) => post({ type: "decoded", reqId: m.reqId, steps }),
        (e: Error) => post({ type: "decoded", reqId: m.reqId, steps: null, error: e.message }),
      );
    }
    flush();
    wake?.();
  });
  post({
    type: "ready",
    info: modelInfoFrom(manifest, { modelDir: opts.modelDir, numBlocks, blockSize: opts.blockSize, hasThoughtDecoder: runner.hasThoughtDecoder, provider: opts.provider }),
  });
  flush();
  while (!stopping) {
    if (!engine.hasWork) {
      await new Promise<void>((r) => (wake = r));
      wake = null;
      continue;
    }
    try {
      await engine.step();
    } catch (e) {
      post({ type: "progress", message: `engine step failed: ${(e as Error).stack ?? e}` });
      engine.failAll(`engine step failed: ${(e as Error).message}`);
    }
    flush();
    // Let queued messages (new requests, aborts) in between steps.
    await new Promise((r) => setImmediate(r));
  }
  await runner.close();
  process.exit(0);
}

main().catch((e: Error) => {
  post({ type: "fatal", message: e.stack ?? e.message });
  process.exit(1);
});
