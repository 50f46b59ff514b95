import type { Config } from "../config.ts";
import type { EngineHandle } from "../engine/engine-handle.ts";
import type { Manifest } from "../model/manifest.ts";
import type { ModelTokenizer } from "../model/tokenizer.ts";
import type { ServeState } from "../http/serve-state.ts";
import type { GenerationService } from "./generation.ts";

/** Shared services, decorated on the app instance by buildApp (app.ts). */

declare module "fastify" {
  interface FastifyInstance {
    config: Config;
    engine: EngineHandle;
    tokenizer: ModelTokenizer;
    manifest: Manifest;
    /** The name clients send as `model`: config.servedModelName, else the manifest's name. */
    modelName: string;
    serveState: ServeState;
    /** The one path from a prompt to choices (and teacher-forced scores): every route shapes it. */
    generation: GenerationService;
    /** Seconds since the epoch at start: the `created` of the model object. */
    startedAt: number;
  }
}
