import Fastify, { type FastifyInstance, type FastifyServerOptions } from "fastify";
import type { Config } from "./config.ts";
import type { EngineHandle } from "./engine/engine-handle.ts";
import type { Manifest } from "./model/manifest.ts";
import type { ModelTokenizer } from "./model/tokenizer.ts";
import { adminRoutes } from "./api/admin.ts";
import { registerAuth } from "./api/auth.ts";
import { chatCompletionsRoutes } from "./api/chat-completions.ts";
import { completionsRoutes } from "./api/completions.ts";
import { GenerationService } from "./api/generation.ts";
import {
  clientErrorHandler,
  frameworkErrorHandler,
  refuseContentEncoding,
  refuseExpectation,
  type RecordFailure,
} from "./api/client-errors.ts";
import { refuseUnmatched, registerErrorHandling } from "./api/error-handler.ts";
import { latentRoutes } from "./api/latent.ts";
import { responsesRoutes } from "./api/responses.ts";
import { modelsRoutes } from "./api/models.ts";
import { registerOpenApi } from "./api/openapi.ts";
import { tokenizeRoutes } from "./api/tokenize.ts";
import { reportIgnoredFields } from "./api/unknown-fields.ts";
import { TraceDecoder } from "./api/trace-decoder.ts";
import type { ServeState } from "./http/serve-state.ts";
import { opsPlugin } from "./ops/plugin.ts";

export interface AppDeps {
  config: Config;
  engine: EngineHandle;
  tokenizer: ModelTokenizer;
  manifest: Manifest;
  logger?: boolean | object;
}

/** The HTTP app: services as decorators, one error shape, auth, the OpenAPI document, routes.
 * It does not listen: src/server.ts does. */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { config } = deps;
  // Failures outside any route are counted once the metrics exist (the ops plugin adds them).
  const record: RecordFailure = (code) => app.metrics?.recordFailure(code);
  const app: FastifyInstance = Fastify({
    logger: (deps.logger ?? false) as FastifyServerOptions["logger"],
    bodyLimit: config.bodyLimit,
    // Fastify's own 503 while closing is not in the OpenAI shape; the routes refuse new work
    // themselves (serveState.draining is set before close) with 503 shutting_down + Retry-After.
    return503OnClosing: false,
    clientErrorHandler: clientErrorHandler(record),
    frameworkErrors: frameworkErrorHandler(record),
    // A client that sends headers and then stalls its body (or connects and sends nothing) must
    // not hold a connection forever: 408 after clientTimeoutMs. This bounds receiving the request
    // only, not streaming the response. Node checks every connectionsCheckingInterval.
    requestTimeout: config.clientTimeoutMs,
    http: {
      headersTimeout: config.clientTimeoutMs,
      requestTimeout: config.clientTimeoutMs,
      connectionsCheckingInterval: Math.min(30_000, Math.max(250, Math.floor(config.clientTimeoutMs / 4))),
    },
    // OpenAI rejects "5" for an integer; Fastify's default coercion would not.
    // verbose: errors carry their schema, so rules across fields can explain themselves.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false, verbose: true } },
  });
  // Response schemas document; JSON.stringify serializes, so no field is ever silently dropped.
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));

  const serveState: ServeState = { ready: true, draining: false };
  app.decorate("config", config);
  app.decorate("engine", deps.engine);
  app.decorate("tokenizer", deps.tokenizer);
  app.decorate("manifest", deps.manifest);
  app.decorate("modelName", config.servedModelName || deps.manifest.name);
  app.decorate("serveState", serveState);
  app.decorate("startedAt", Math.floor(Date.now() / 1000));
  const traceDecoder = new TraceDecoder(deps.engine, deps.tokenizer, deps.manifest, app.log);
  app.decorate(
    "generation",
    new GenerationService({ engine: deps.engine, traceDecoder, serveState, config, modelName: app.modelName }),
  );

  app.server.on("checkExpectation", refuseExpectation(record));
  // Bodies are JSON; Fastify's default text/plain parser would turn a text body into a string
  // that then fails validation as "must be object" instead of 415.
  app.removeContentTypeParser("text/plain");
  registerErrorHandling(app);
  refuseContentEncoding(app);
  // First, so the document also lists the operations routes (swagger collects routes as added).
  await registerOpenApi(app);
  await app.register(opsPlugin, { engine: deps.engine, config, modelName: app.modelName, state: serveState });
  registerAuth(app, config);
  refuseUnmatched(app);
  reportIgnoredFields(app);
  await app.register(chatCompletionsRoutes);
  await app.register(completionsRoutes);
  await app.register(modelsRoutes);
  await app.register(tokenizeRoutes);
  await app.register(latentRoutes);
  await app.register(responsesRoutes);
  // Off by default: without an admin key the admin routes do not exist (404).
  if (config.adminKey) await app.register(adminRoutes, { adminKey: config.adminKey });
  return app;
}
