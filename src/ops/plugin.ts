import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import type { Config } from "../config.ts";
import type { EngineHandle } from "../engine/engine-handle.ts";
import { registerCors } from "./cors.ts";
import type { ServeState } from "../http/serve-state.ts";
import { healthRoutes } from "./health.ts";
import { ServeMetrics } from "./metrics.ts";
import { ReadinessProbe } from "./probe.ts";
import { registerRequestIds } from "./request-id.ts";

/** Operations: request ids, CORS, /health, /ready, /metrics, and the HTTP-edge counters. Not
 * encapsulated (its hooks must see every route), so register it before auth and the routes. */

export interface OpsOptions {
  engine: EngineHandle;
  config: Pick<Config, "corsOrigins" | "readinessTimeoutMs">;
  modelName: string;
  /** Shared with server.ts, which flips it at start and on SIGTERM. */
  state: ServeState;
}

declare module "fastify" {
  interface FastifyInstance {
    metrics: ServeMetrics;
  }
  interface FastifyContextConfig {
    /** Operations routes: left out of the failure counter (probes are not user traffic). */
    ops?: boolean;
    /** A route whose successful requests have a counter of their own. */
    counted?: "latent_scoring";
  }
  interface FastifyRequest {
    /** A stream that failed after its 200 status line: the error code it ended with (sse.ts). */
    streamFailure?: string;
  }
}

async function ops(app: FastifyInstance, opts: OpsOptions): Promise<void> {
  registerRequestIds(app);
  registerCors(app, opts.config.corsOrigins);

  const metrics = new ServeMetrics(opts.modelName);
  opts.engine.observe(metrics);
  app.decorate("metrics", metrics);
  metrics.setWeightsVersion(opts.engine.weightsVersion);

  const probe = new ReadinessProbe(opts.engine, opts.config.readinessTimeoutMs);
  await healthRoutes(app, { engine: opts.engine, state: opts.state, probe, modelName: opts.modelName });

  app.get(
    "/metrics",
    {
      logLevel: "warn",
      config: { ops: true, access: "public" },
      schema: { summary: "Prometheus metrics (text exposition format)", tags: ["Operations"] },
    },
    async (_request, reply) => reply.type(metrics.contentType).send(await metrics.text()),
  );

  // Failures are counted where every error is already in one shape: the OpenAI body's error.code.
  app.addHook("onSend", async (request, reply, payload) => {
    if (reply.statusCode < 400 || request.routeOptions.config?.ops) return payload;
    metrics.recordFailure(errorCode(payload) ?? `http_${reply.statusCode}`);
    return payload;
  });

  app.addHook("onResponse", async (request, reply) => {
    // The status line already said 200: a stream's failure is counted here, by its code.
    if (request.streamFailure) metrics.recordFailure(request.streamFailure);
    else if (request.routeOptions.config?.counted === "latent_scoring" && reply.statusCode < 300)
      metrics.recordLatentScoringRequest();
  });
}

function errorCode(payload: unknown): string | null {
  const text = typeof payload === "string" ? payload : Buffer.isBuffer(payload) ? payload.toString("utf8") : null;
  if (text === null || !text.startsWith("{")) return null;
  try {
    const code = (JSON.parse(text) as { error?: { code?: unknown } }).error?.code;
    return typeof code === "string" && /^[a-z0-9_]{1,64}$/.test(code) ? code : null;
  } catch {
    return null;
  }
}

// Not encapsulated: the plugin's hooks and decorators land on the parent instance.
export const opsPlugin = fp(ops, { name: "nfcot-ops", fastify: "5.x" });
