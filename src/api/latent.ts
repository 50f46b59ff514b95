import type { FastifyInstance } from "fastify";
import { ServeError } from "../errors.ts";
import { latentPrompt, type Prompt } from "../model/prompt.ts";
import { encodeChat } from "./chat-prompt.ts";
import { WEIGHTS_VERSION_HEADER, requestId } from "./generation.ts";
import { checkAccepting, checkLatentAvailable, checkModel, checkQueue } from "./guards.ts";
import { checkPromptChars, messagesChars } from "./prompt-limits.ts";
import { postSchema } from "./response-schemas.ts";
import type { LatentDecodeRequest, LatentLogprobsRequest } from "./schemas.ts";
import { parseThoughts, traceSteps, traceText } from "./thoughts.ts";

/** NF-CoT routes. POST /v1/latent/logprobs scores trajectories teacher-forced (one prefill each,
 * batched and prefix-cached by the engine's scheduler, like any prompt): the exact
 * log p(u_i | context) at T_z = 1 of each thought, the answer tokens' log-probs (EOS included),
 * and the policy log-prob; with latent_temperature, the behaviour density at that T_z beside it;
 * with return_flow_log_det, the flow's log-det and log p(e | q). POST /v1/latent/decode turns thoughts into trace text. */

/** The scoring prompt always opens a latent span: the trajectories' thoughts follow it. The
 * schema lets exactly one of messages and prompt through. */
function scoringPrompt(app: FastifyInstance, body: LatentLogprobsRequest): Prompt {
  const info = app.engine.info;
  if (!body.messages) return latentPrompt(app.tokenizer.encode(body.prompt!), info);
  if (!info.reasoningModes.includes("latent")) {
    throw new ServeError("invalid_request", "This model has no latent reasoning mode.", "model");
  }
  return encodeChat(app, body.messages, { mode: "latent" });
}

const sum = (xs: number[]) => xs.reduce((s, x) => s + x, 0);
/** JSON has no Infinity or NaN: a density that underflows (a tiny latent_temperature, thoughts far
 * outside the flow's range) is reported as null. */
const finiteOrNull = (x: number): number | null => (Number.isFinite(x) ? x : null);
const total = (xs: (number | null)[]): number | null =>
  xs.some((x) => x === null) ? null : finiteOrNull(sum(xs as number[]));

export async function latentRoutes(app: FastifyInstance): Promise<void> {
  app.post<{ Body: LatentLogprobsRequest }>(
    "/v1/latent/logprobs",
    {
      config: { counted: "latent_scoring" },
      schema: postSchema(
        "Score latent trajectories (exact log-likelihoods)",
        "NF-CoT",
        "LatentLogprobsRequest",
        "LatentLogprobsResponse",
      ),
    },
    async (request, reply) => {
      const body = request.body;
      const info = app.engine.info;
      checkModel(app, body.model);
      checkLatentAvailable(app, "model");
      checkAccepting(app);
      const answers = body.trajectories.reduce((n, t) => n + (t.answer?.length ?? 0), 0);
      checkPromptChars(
        app,
        (body.prompt?.length ?? 0) + (body.messages ? messagesChars(body.messages) : 0) + answers,
        answers > 0 ? "trajectories" : body.prompt !== undefined ? "prompt" : "messages",
      );
      const promptIds = scoringPrompt(app, body).ids;
      const jobs = body.trajectories.map((t, i) => {
        const thoughts = parseThoughts(t.thoughts, info.numThoughts, info.thoughtDim, `trajectories[${i}].thoughts`);
        const answerIds = t.answer === undefined ? [] : [...app.tokenizer.encode(t.answer), info.special.eos];
        const total = promptIds.length + thoughts.length + answerIds.length;
        if (total > info.maxContext) {
          throw new ServeError(
            "context_length_exceeded",
            `This model's maximum context length is ${info.maxContext} tokens. However, trajectory ${i} needs ${total} ` +
              `(${promptIds.length} in the prompt, ${thoughts.length} thoughts, ${answerIds.length} in the answer with EOS).`,
            `trajectories[${i}].answer`,
          );
        }
        return { thoughts, answerIds };
      });
      checkQueue(app, jobs.length, "trajectories");
      const temperature = body.latent_temperature ?? 0;
      const returnFlowLogDet = body.return_flow_log_det ?? false;
      if (returnFlowLogDet && !info.hasFlow) {
        throw new ServeError(
          "invalid_request",
          "This model ships no shallow flow graphs: there is no flow log-det to return.",
          "return_flow_log_det",
        );
      }
      if (returnFlowLogDet) {
        jobs.forEach((j, i) => {
          if (j.thoughts.length !== info.numThoughts) {
            throw new ServeError(
              "invalid_request",
              `The flow log-det needs a full span of ${info.numThoughts} thoughts.`,
              `trajectories[${i}].thoughts`,
            );
          }
        });
      }

      const baseId = requestId("score");
      const results = await app.generation.score(
        reply,
        jobs.map((j, i) => ({
          kind: "score",
          id: `${baseId}-${i}`,
          promptIds,
          thoughts: j.thoughts,
          answerIds: j.answerIds,
          temperature,
          returnFlowLogDet,
        })),
      );
      // Never answer with a partial score: every thought and answer position must have its value.
      results.forEach((r, i) => {
        const j = jobs[i]!;
        if (r.thoughtLogProbs.length !== j.thoughts.length || r.answerLogprobs.length !== j.answerIds.length) {
          throw new ServeError(
            "engine_error",
            `The engine scored ${r.thoughtLogProbs.length} of ${j.thoughts.length} thoughts and ` +
              `${r.answerLogprobs.length} of ${j.answerIds.length} answer tokens of trajectory ${i}.`,
          );
        }
      });
      // One request's trajectories run under one weights version (the client stamps them together).
      const weightsVersion = results[0]?.weightsVersion ?? app.engine.weightsVersion;
      reply.header(WEIGHTS_VERSION_HEADER, weightsVersion);
      return {
        object: "list",
        model: app.modelName,
        weights_version: weightsVersion,
        data: results.map((r, i) => {
          const thoughtLogProb = sum(r.thoughtLogProbs);
          const answerLogProb = sum(r.answerLogprobs.map((a) => a.logprob));
          const behaviour =
            temperature > 0
              ? r.thoughtBehaviourLogProbs.map((b) => (b === null || !Number.isFinite(b) ? null : b))
              : null;
          return {
            index: i,
            thought_log_probs: r.thoughtLogProbs,
            thought_log_prob: thoughtLogProb,
            answer_logprobs: r.answerLogprobs.map((a) => ({
              token: app.tokenizer.tokenText(a.tokenId),
              logprob: a.logprob,
            })),
            answer_log_prob: answerLogProb,
            log_prob: thoughtLogProb + answerLogProb,
            ...(behaviour
              ? {
                  thought_behaviour_log_probs: behaviour,
                  thought_behaviour_log_prob: total(behaviour),
                  behaviour_log_prob: total([...behaviour, answerLogProb]),
                }
              : {}),
            ...(r.flowLogDet !== undefined
              ? { flow_log_det: finiteOrNull(r.flowLogDet), e_log_prob: finiteOrNull(thoughtLogProb + r.flowLogDet) }
              : {}),
          };
        }),
        usage: {
          prompt_tokens: promptIds.length,
          total_tokens: sum(jobs.map((j) => promptIds.length + j.thoughts.length + j.answerIds.length)),
        },
      };
    },
  );

  app.post<{ Body: LatentDecodeRequest }>(
    "/v1/latent/decode",
    {
      schema: postSchema(
        "Decode thoughts into trace text (models with a thought decoder)",
        "NF-CoT",
        "LatentDecodeRequest",
        "LatentDecodeResponse",
      ),
    },
    async (request) => {
      const body = request.body;
      const info = app.engine.info;
      checkModel(app, body.model);
      checkLatentAvailable(app, "model");
      checkAccepting(app);
      if (!info.hasThoughtDecoder) {
        throw new ServeError("not_found", `The model '${app.modelName}' ships no thought decoder.`, "model");
      }
      const thoughts = parseThoughts(body.thoughts, info.numThoughts, info.thoughtDim, "thoughts");
      let slots: number[][][];
      try {
        slots = await app.engine.decodeThoughts([thoughts]);
      } catch (err) {
        throw new ServeError("engine_error", `The thought decoder failed: ${(err as Error).message}`);
      }
      const steps = traceSteps(slots[0]!, app.tokenizer, app.manifest);
      return { object: "latent.decode", model: app.modelName, decoded: traceText(steps, app.manifest), steps };
    },
  );
}
