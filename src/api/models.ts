import type { FastifyInstance } from "fastify";
import { checkModel } from "./guards.ts";
import { ERROR_RESPONSES } from "./response-schemas.ts";
import type { ModelParams } from "./schemas.ts";

/** GET /v1/models and /v1/models/{model}: the one served model, with its NF-CoT facts. */

function modelObject(app: FastifyInstance) {
  const info = app.engine.info;
  return {
    id: app.modelName,
    object: "model",
    created: app.startedAt,
    owned_by: "nfcot-serve",
    max_model_len: info.maxContext,
    nfcot: {
      num_thoughts: info.numThoughts,
      thought_dim: info.thoughtDim,
      reasoning_modes: info.reasoningModes,
      default_reasoning_mode: info.defaultReasoningMode,
      default_latent_temperature: info.defaultLatentTemperature,
      greedy_latent_temperature: 0,
      reasoning_split: info.reasoningSplit,
      has_thought_decoder: info.hasThoughtDecoder,
      latent_available: info.latentUnavailable === null,
      ...(info.latentUnavailable !== null ? { latent_unavailable_reason: info.latentUnavailable } : {}),
    },
  };
}

export async function modelsRoutes(app: FastifyInstance): Promise<void> {
  app.get(
    "/v1/models",
    {
      schema: {
        summary: "List models",
        tags: ["OpenAI"],
        response: { 200: { $ref: "ModelList#" }, ...ERROR_RESPONSES },
      },
    },
    async () => ({ object: "list", data: [modelObject(app)] }),
  );

  app.get<{ Params: ModelParams }>(
    "/v1/models/:model",
    {
      schema: {
        summary: "Retrieve a model",
        tags: ["OpenAI"],
        params: { type: "object", properties: { model: { type: "string" } }, required: ["model"] },
        response: { 200: { $ref: "Model#" }, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      checkModel(app, request.params.model);
      return modelObject(app);
    },
  );
}
