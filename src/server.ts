import { buildApp } from "./app.ts";
import { ConfigError, parseConfig, redact } from "./config.ts";
import { EngineClient } from "./engine/client.ts";
import { DEFAULT_ENGINE_OPTIONS } from "./engine/options.ts";
import { loadManifest } from "./model/manifest.ts";
import { ModelTokenizer } from "./model/tokenizer.ts";
import pino from "pino";

/** Process entry: config, engine worker, app, listen; SIGTERM drains. Everything else is in app.ts. */

async function main(): Promise<void> {
  let config;
  try {
    config = parseConfig(process.argv.slice(2), process.env);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(e.message + "\n");
      process.exit(2);
    }
    throw e;
  }
  const log = pino({ level: config.logLevel });
  log.info({ config: redact(config) }, "starting nfcot-serve");
  const manifest = loadManifest(config.modelDir);
  const tokenizer = new ModelTokenizer(config.modelDir, manifest);
  const t0 = Date.now();
  const engine = await EngineClient.start(
    {
      ...DEFAULT_ENGINE_OPTIONS,
      modelDir: config.modelDir,
      provider: config.provider,
      threads: config.threads,
      graphOptimization: config.graphOptimization,
      blockSize: config.blockSize,
      numBlocks: config.kvCacheBlocks > 0 ? config.kvCacheBlocks : null,
      kvCacheBytes: config.kvCacheBytes,
      maxNumSeqs: config.maxNumSeqs,
      maxNumBatchedTokens: config.maxNumBatchedTokens,
      enablePrefixCaching: config.enablePrefixCaching,
    },
    (msg) => log.info(msg),
  );
  log.info({ model: engine.info.name, ms: Date.now() - t0, kvBlocks: engine.info.numBlocks }, "model loaded");
  const app = await buildApp({ config, engine, tokenizer, manifest, logger: log });
  await app.listen({ host: config.host, port: config.port });
  app.serveState.ready = true;

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, drainTimeoutMs: config.drainTimeoutMs }, "draining");
    app.serveState.ready = false;
    app.serveState.draining = true;
    const deadline = Date.now() + config.drainTimeoutMs;
    while (engine.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await app.close();
    await engine.close();
    log.info({ unfinished: engine.inFlight }, "stopped");
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
}

main().catch((e: Error) => {
  process.stderr.write(`nfcot-serve failed to start: ${e.message}\n`);
  process.exit(1);
});
