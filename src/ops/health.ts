import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import type { EngineHandle } from "../engine/engine-handle.ts";
import { ServeError } from "../errors.ts";
import { ErrorBody as ErrorFields, sendError } from "../http/error-response.ts";
import { shuttingDown, type ServeState } from "../http/serve-state.ts";
import type { ReadinessProbe } from "./probe.ts";

/** GET /health is liveness: the process answers and the engine worker is alive (a restart helps
 * only when it is not). GET /ready is readiness: the model is loaded, the server is not draining,
 * and a one-token generation, run ahead of queued work, finishes in time (a stalled engine takes
 * the pod out of rotation without restarting it; a busy one stays in). Both answer 503 in the OpenAI error shape, with Retry-After. */

export interface HealthOptions {
  engine: EngineHandle;
  state: ServeState;
  probe: ReadinessProbe;
  modelName: string;
}

const ErrorBody = Type.Object(ErrorFields);

// Probes hit these every few seconds: their request lines stay out of the info log.
const quiet = { logLevel: "warn" as const, config: { ops: true, access: "public" as const } };

export async function healthRoutes(app: FastifyInstance, opts: HealthOptions): Promise<void> {
  const { engine, state, probe, modelName } = opts;

  app.get(
    "/health",
    {
      ...quiet,
      schema: {
        summary: "Liveness: the process and the engine worker are alive",
        tags: ["Operations"],
        response: { 200: Type.Object({ status: Type.Literal("ok") }), 503: ErrorBody },
      },
    },
    async (_request, reply) => {
      if (!engine.alive)
        return sendError(reply, new ServeError("not_ready", "The inference engine worker is not running."));
      return { status: "ok" as const };
    },
  );

  app.get(
    "/ready",
    {
      ...quiet,
      schema: {
        summary: "Readiness: model loaded, not draining, and a one-token generation finishes in time",
        tags: ["Operations"],
        response: {
          200: Type.Object({ status: Type.Literal("ready"), model: Type.String(), probe_ms: Type.Number() }),
          503: ErrorBody,
        },
      },
    },
    async (_request, reply) => {
      if (state.draining) {
        return sendError(reply, shuttingDown(30));
      }
      if (!state.ready) return sendError(reply, new ServeError("not_ready", "The model is loading.", null, 5));
      if (!engine.alive)
        return sendError(reply, new ServeError("not_ready", "The inference engine worker is not running.", null, 5));
      const r = await probe.check();
      if (!r.ok) return sendError(reply, new ServeError("not_ready", r.message, null, 1));
      // Draining may have begun while the probe ran.
      if (state.draining) {
        return sendError(reply, shuttingDown(30));
      }
      return { status: "ready" as const, model: modelName, probe_ms: r.ms };
    },
  );
}
