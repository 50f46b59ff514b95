import pino from "pino";
import { buildApp } from "./app.ts";
import { ConfigError, apiKeysFromArgv, parseConfig, redact, type Config } from "./config.ts";
import { EngineClient } from "./engine/client.ts";
import { engineOptionsFrom } from "./engine/options.ts";
import { loadManifest } from "./model/manifest.ts";
import { ModelTokenizer } from "./model/tokenizer.ts";
import { drain, InFlightRequests } from "./ops/drain.ts";
import { engineLog } from "./ops/engine-log.ts";
import { startLoadingServer } from "./ops/loading-server.ts";

/** Process entry: config, a loading-phase responder on the port, the engine worker, the app,
 * listen; SIGTERM/SIGINT drain (a second one exits at once). Everything HTTP is in app.ts. */

function configOrExit(): Config {
  try {
    return parseConfig(process.argv.slice(2), process.env);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    process.stderr.write(`${e.message}\n`);
    process.exit(2);
  }
}

async function main(): Promise<void> {
  const config = configOrExit();
  const log = pino({ level: config.logLevel });
  log.info({ config: redact(config) }, "starting nfcot-serve");
  if (apiKeysFromArgv(process.argv.slice(2))) {
    log.warn(
      "API keys came from the command line (--api-keys): every user sees them in ps, and npm echoes them; set NFCOT_API_KEYS instead",
    );
  }

  let onSignal: (signal: string) => void = (signal) => {
    log.info({ signal }, "stopped while loading");
    process.exit(0);
  };
  let signals = 0;
  const handle = (signal: string) => {
    if (++signals > 1) {
      log.warn({ signal }, "second signal: exiting without finishing the drain");
      process.exit(1);
    }
    onSignal(signal);
  };
  process.on("SIGTERM", () => handle("SIGTERM"));
  process.on("SIGINT", () => handle("SIGINT"));

  const loading = await startLoadingServer(config.host, config.port);
  log.info({ host: config.host, port: loading.port }, "listening; /ready answers 503 until the model is loaded");

  const t0 = Date.now();
  log.info({ modelDir: config.modelDir }, "loading the model");
  const manifest = loadManifest(config.modelDir);
  const tokenizer = new ModelTokenizer(config.modelDir, manifest);
  const engine = await EngineClient.start(engineOptionsFrom(config), engineLog(log));
  const inFlight = new InFlightRequests();
  engine.observe(inFlight);
  log.info(
    { model: engine.info.name, provider: engine.info.provider, kvBlocks: engine.info.numBlocks, ms: Date.now() - t0 },
    "model loaded",
  );

  // Fastify builds its own pino from these options (it takes no logger instance in `logger`).
  const app = await buildApp({ config, engine, tokenizer, manifest, logger: { level: config.logLevel } });
  app.serveState.ready = false;
  await loading.close();
  await app.listen({ host: config.host, port: loading.port });
  app.serveState.ready = true;
  log.info({ host: config.host, port: loading.port, model: app.modelName }, "ready");

  onSignal = (signal) => {
    log.info({ signal, drainTimeoutMs: config.drainTimeoutMs, inFlight: engine.inFlight }, "draining");
    drain({ app, engine, inFlight, state: app.serveState, timeoutMs: config.drainTimeoutMs, log: app.log }).then(
      ({ aborted }) => {
        log.info({ aborted }, "stopped");
        process.exit(0);
      },
      (e: Error) => {
        log.error({ err: e }, "drain failed");
        process.exit(1);
      },
    );
  };
}

main().catch((e: Error) => {
  process.stderr.write(`nfcot-serve failed to start: ${e.message}\n`);
  process.exit(1);
});
