import type { FastifyInstance } from "fastify";
import { ServeError } from "../errors.ts";
import { shuttingDown } from "../http/serve-state.ts";

/** Admission checks shared by the routes, in the order a request meets them. */

export function checkModel(app: FastifyInstance, model: string | undefined | null, param = "model"): void {
  if (model === undefined || model === null) return;
  if (model !== app.modelName) {
    throw new ServeError(
      "model_not_found",
      `The model '${model}' does not exist. This server serves '${app.modelName}'.`,
      param,
    );
  }
}

/** New work is refused while draining (503 shutting_down) or when the engine worker is gone. */
export function checkAccepting(app: FastifyInstance): void {
  if (app.serveState.draining) {
    throw shuttingDown(5);
  }
  if (!app.engine.alive) throw new ServeError("not_ready", "The inference engine is not running.", null, 5);
}

/** Bounded queue: `count` new engine requests must fit under config.maxQueue. A request that
 * could never fit is a 400 (retrying would not help), naming the field that sets its size. */
export function checkQueue(
  app: { config: { maxQueue: number }; engine: { inFlight: number } },
  count: number,
  sizeParam: string | null = null,
): void {
  if (count > app.config.maxQueue) {
    throw new ServeError(
      "invalid_request",
      `This request needs ${count} sequences at once; the server runs at most ${app.config.maxQueue}. Split it.`,
      sizeParam,
    );
  }
  const inFlight = app.engine.inFlight;
  if (inFlight + count > app.config.maxQueue) {
    throw new ServeError(
      "queue_full",
      `The server is at capacity (${inFlight} requests in flight, limit ${app.config.maxQueue}). Retry later.`,
      null,
      1,
    );
  }
}

export function checkN(app: FastifyInstance, n: number): void {
  if (n > app.config.maxN) {
    throw new ServeError("invalid_request", `n must be at most ${app.config.maxN}, got ${n}.`, "n");
  }
}

/** What every generation route checks first: the model, n, and that new work is accepted.
 * Returns n (1 when absent). */
export function checkGeneration(app: FastifyInstance, body: { model?: string | null; n?: number | null }): number {
  const n = body.n ?? 1;
  checkModel(app, body.model);
  checkN(app, n);
  checkAccepting(app);
  return n;
}

/** A latent request to a text-only model: 400 naming why latent reasoning is unavailable. */
export function checkLatentAvailable(app: FastifyInstance, param: string): void {
  const reason = app.engine.info.latentUnavailable;
  if (reason !== null) throw new ServeError("invalid_request", reason, param);
}
