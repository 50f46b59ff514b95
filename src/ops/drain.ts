import type { FastifyBaseLogger, FastifyInstance } from "fastify";
import type { EngineHandle, EngineObserver } from "../engine/engine-handle.ts";
import type { EngineEvent, GenerateRequest, ScoreRequest } from "../engine/types.ts";
import type { ServeState } from "../http/serve-state.ts";

/** Graceful shutdown: readiness turns 503 and new work is refused (the routes check `draining`),
 * requests in flight run to their end until the drain deadline, what is left then is aborted (its
 * streams still end properly, with finish_reason "abort"), and the app and the engine close. */

/** The ids of engine requests in flight, so that the drain deadline can abort them. */
export class InFlightRequests implements EngineObserver {
  readonly ids = new Set<string>();
  onSubmit(req: GenerateRequest | ScoreRequest): void {
    this.ids.add(req.id);
  }
  onEvent(e: EngineEvent): void {
    if (e.type === "finish" || e.type === "error") this.ids.delete(e.id);
  }
  onStats(): void {}
}

export interface DrainOptions {
  app: FastifyInstance;
  engine: EngineHandle;
  inFlight: InFlightRequests;
  state: ServeState;
  timeoutMs: number;
  log: FastifyBaseLogger;
  /** After the deadline (and the aborts), how long responses may take to end before their
   * connections are cut (a client that stopped reading must not hold the exit). */
  graceMs?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function drain(o: DrainOptions): Promise<{ aborted: number }> {
  o.state.ready = false;
  o.state.draining = true;
  const deadline = Date.now() + o.timeoutMs;
  while (o.engine.inFlight > 0 && Date.now() < deadline) await sleep(25);
  const aborted = o.engine.inFlight > 0 ? o.inFlight.ids.size : 0;
  if (aborted > 0) {
    o.log.warn({ aborted, drainTimeoutMs: o.timeoutMs }, "drain deadline reached: aborting the requests still running");
    for (const id of o.inFlight.ids) o.engine.abort(id);
  }
  // Fastify's close stops listening and waits for the responses in progress (a stream's last
  // chunks and [DONE]); requests that arrive on open connections meanwhile get 503.
  const cut = setTimeout(() => o.app.server.closeAllConnections(), o.graceMs ?? 5000);
  try {
    await o.app.close();
  } finally {
    clearTimeout(cut);
  }
  await o.engine.close();
  return { aborted };
}
