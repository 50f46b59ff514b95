import type { Socket } from "node:net";
import type { FastifyInstance } from "fastify";
import { buildApp } from "../../src/app.ts";
import { parseConfig, type Config } from "../../src/config.ts";
import { EngineClient, type EngineLog } from "../../src/engine/client.ts";
import { engineOptionsFrom } from "../../src/engine/options.ts";
import { loadManifest } from "../../src/model/manifest.ts";
import { ModelTokenizer } from "../../src/model/tokenizer.ts";

/** The real engine worker + app on 127.0.0.1, on a free port, with the shipped model. A small KV
 * pool and one thread keep test servers light on this shared machine. */

export interface TestServer {
  url: string;
  app: FastifyInstance;
  engine: EngineClient;
  config: Config;
  close: () => Promise<void>;
}

export function testConfig(overrides: Partial<Config> = {}): Config {
  return {
    ...parseConfig([], {}),
    host: "127.0.0.1",
    port: 0,
    kvCacheBlocks: 256,
    threads: 1,
    logLevel: "silent",
    ...overrides,
  };
}

/** Another app on the same engine (e.g. with API keys or a tiny queue), without a second worker. */
/** `logger`: Fastify logger options (e.g. { level, stream } to capture lines); off by default. */
export async function startAppOn(
  engine: EngineClient,
  overrides: Partial<Config> = {},
  logger: object | false = false,
): Promise<Omit<TestServer, "engine"> & { engine: EngineClient }> {
  const config = testConfig(overrides);
  const manifest = loadManifest(config.modelDir);
  const app = await buildApp({
    config,
    engine,
    tokenizer: new ModelTokenizer(config.modelDir, manifest),
    manifest,
    logger,
  });
  const sockets = new Set<Socket>();
  app.server.on("connection", (sock: Socket) => {
    sockets.add(sock);
    sock.once("close", () => sockets.delete(sock));
  });
  await app.listen({ host: config.host, port: 0 });
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  // A connection the client opened but never used (undici opens one after an abort) would hold
  // close() until the server's headers timeout (~70 s), and one may arrive while closing: drop
  // every connection until the server has stopped.
  const close = async () => {
    const drop = () => sockets.forEach((sock) => sock.destroy());
    const timer = setInterval(drop, 10);
    drop();
    try {
      await app.close();
    } finally {
      clearInterval(timer);
    }
  };
  return { url: `http://127.0.0.1:${port}`, app, engine, config, close };
}

export async function startServer(
  overrides: Partial<Config> = {},
  logs: { logger?: object; engineLog?: EngineLog } = {},
): Promise<TestServer> {
  const config = testConfig(overrides);
  const engine = await EngineClient.start(engineOptionsFrom(config), logs.engineLog);
  try {
    const s = await startAppOn(engine, overrides, logs.logger ?? false);
    return {
      ...s,
      close: async () => {
        await s.close();
        await engine.close();
      },
    };
  } catch (e) {
    await engine.close();
    throw e;
  }
}

/** Polls until `check` holds (engine stats arrive asynchronously from the worker). */
export async function waitFor(check: () => boolean, timeoutMs = 5000, what = "condition"): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
