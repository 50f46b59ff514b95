import { timingSafeEqual } from "node:crypto";
import type { FastifyInstance } from "fastify";
import { Type, type Static } from "@sinclair/typebox";
import { WeightUpdateError } from "../engine/client.ts";
import { WEIGHTS_VERSION_PATTERN } from "../engine/weights.ts";
import { ServeError } from "../errors.ts";
import { WEIGHTS_VERSION_HEADER } from "./generation.ts";
import { ERROR_RESPONSES } from "./response-schemas.ts";

/** Admin routes (only when --admin-key is set; otherwise not registered, so 404): weight updates
 * without a restart. Their own key, `Authorization: Bearer <admin key>`, checked on the matched
 * route before the body is read; the API keys do not open them. */

export const WeightsUpdateRequest = Type.Object(
  {
    model_dir: Type.String({
      minLength: 1,
      description:
        "A model directory exported by models/ (python -m nfcot.export) for the same architecture, readable by the server.",
    }),
    version: Type.Optional(
      Type.String({
        pattern: WEIGHTS_VERSION_PATTERN.source,
        description: "Name for the new weights (responses carry it). Default: v<updates + 1>.",
      }),
    ),
  },
  { $id: "WeightsUpdateRequest", title: "WeightsUpdateRequest" },
);
export type WeightsUpdateRequest = Static<typeof WeightsUpdateRequest>;

export const WeightsStatus = Type.Object(
  {
    object: Type.Literal("weights"),
    version: Type.String({ description: "The weights serving now." }),
    previous_version: Type.Optional(Type.String()),
    model_dir: Type.String(),
    updates: Type.Integer({ description: "Successful updates since start." }),
    failed_updates: Type.Integer(),
    in_progress: Type.Union([Type.String(), Type.Null()], {
      description: "The version an update in progress will serve.",
    }),
    swap_ms: Type.Optional(
      Type.Number({
        description: "From the request to the new weights serving (load + wait for the old weights' requests).",
      }),
    ),
  },
  { $id: "WeightsStatus", title: "WeightsStatus" },
);

const ADMIN_ERRORS = {
  ...ERROR_RESPONSES,
  409: {
    description: "A weight update is in progress, or that version serves already",
    content: { "application/json": { schema: { $ref: "ErrorResponse#" } } },
  },
  422: {
    description: "The model directory cannot replace the served model; the old weights keep serving",
    content: { "application/json": { schema: { $ref: "ErrorResponse#" } } },
  },
};

/** Route config: the API keys do not apply (route-based auth reads `access`); the admin key does. */
const ADMIN_ROUTE_CONFIG = { ops: false, access: "public" } as const;

export async function adminRoutes(app: FastifyInstance, opts: { adminKey: string }): Promise<void> {
  const key = Buffer.from(opts.adminKey);
  app.addHook("onRequest", async (request) => {
    const m = /^Bearer\s+(.+)$/i.exec(request.headers.authorization ?? "");
    if (!m) throw new ServeError("invalid_admin_key", "Admin routes need Authorization: Bearer <admin key>.");
    const given = Buffer.from(m[1]!.trim());
    if (given.length !== key.length || !timingSafeEqual(given, key))
      throw new ServeError("invalid_admin_key", "Incorrect admin key.");
  });
  app.addSchema(WeightsUpdateRequest);
  app.addSchema(WeightsStatus);
  let modelDir = app.engine.info.modelDir;
  let previous: string | undefined;

  const status = () => {
    const u = app.engine.weightUpdates;
    return {
      object: "weights" as const,
      version: app.engine.weightsVersion,
      ...(previous !== undefined ? { previous_version: previous } : {}),
      model_dir: modelDir,
      updates: u.ok,
      failed_updates: u.failed,
      in_progress: u.inProgress,
    };
  };

  app.get(
    "/admin/weights",
    {
      config: ADMIN_ROUTE_CONFIG,
      schema: {
        summary: "The weights version serving",
        tags: ["Admin"],
        response: { 200: { $ref: "WeightsStatus#" }, ...ADMIN_ERRORS },
      },
    },
    async () => status(),
  );

  app.post<{ Body: WeightsUpdateRequest }>(
    "/admin/weights",
    {
      config: ADMIN_ROUTE_CONFIG,
      schema: {
        summary: "Load new weights and swap them in without a restart",
        description:
          "Loads model_dir beside the serving weights (same architecture, tokenizer and graphs), then swaps it in between two engine steps. " +
          "Requests already sent finish under the old weights; requests sent after the load wait for the swap and run under the new ones. " +
          "The prefix cache is flushed. Answers when the new weights serve. A directory that cannot be loaded is refused (422) and the old weights keep serving.",
        tags: ["Admin"],
        body: { $ref: "WeightsUpdateRequest#" },
        response: { 200: { $ref: "WeightsStatus#" }, ...ADMIN_ERRORS },
      },
    },
    async (request, reply) => {
      const t0 = performance.now();
      const before = app.engine.weightsVersion;
      const version = request.body.version ?? `v${app.engine.weightUpdates.ok + 1}`;
      try {
        await app.engine.updateWeights(request.body.model_dir, version);
      } catch (e) {
        if (!(e instanceof WeightUpdateError)) throw e;
        if (e.code !== "conflict") app.metrics.recordWeightUpdate("failed");
        const param = e.code === "model_load_failed" ? "model_dir" : e.code === "conflict" ? "version" : null;
        throw new ServeError(e.code, e.message, param);
      }
      previous = before;
      modelDir = request.body.model_dir;
      app.metrics.recordWeightUpdate("ok");
      app.metrics.setWeightsVersion(app.engine.weightsVersion);
      request.log.info({ version, previous: before, modelDir }, "weights updated");
      reply.header(WEIGHTS_VERSION_HEADER, app.engine.weightsVersion);
      return { ...status(), swap_ms: performance.now() - t0 };
    },
  );
}
