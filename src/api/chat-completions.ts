import type { FastifyInstance } from "fastify";
import { ServeError } from "../errors.ts";
import {
  GenerationRun,
  collectChoices,
  engineErrorToServeError,
  requestId,
  spanOf,
  thoughtsSummary,
  timeoutError,
  usageOf,
  type FinishEvent,
} from "./generation.ts";
import { checkGeneration, checkLatentAvailable, checkQueue } from "./guards.ts";
import { encodeChat } from "./chat-prompt.ts";
import { chatLogprobs } from "./logprobs.ts";
import { ERROR_RESPONSES } from "./response-schemas.ts";
import { budgetMaxTokens, toLatent, toSampling } from "./sampling.ts";
import type { ChatCompletionRequest } from "./schemas.ts";
import { SSE_DONE, chunkEncoder, sendEventStream, sseData } from "./sse.ts";
import { encodeThought } from "./thoughts.ts";

/** POST /v1/chat/completions: messages through the chat template (in the requested reasoning
 * mode), n choices, streamed or whole, with the NF-CoT `thoughts` of each choice. */

interface StreamContext {
  n: number;
  includeUsage: boolean;
  returnThoughts: boolean;
}

export async function chatCompletionsRoutes(app: FastifyInstance): Promise<void> {
  const fingerprint = `nfcot-serve-${app.modelName}`;

  app.post<{ Body: ChatCompletionRequest }>(
    "/v1/chat/completions",
    {
      schema: {
        summary: "Create a chat completion",
        tags: ["OpenAI"],
        body: { $ref: "ChatCompletionRequest#" },
        response: {
          200: {
            description: "A chat.completion, or with stream: true an event stream of chat.completion.chunk objects.",
            content: {
              "application/json": { schema: { $ref: "ChatCompletion#" } },
              "text/event-stream": { schema: { $ref: "ChatCompletionChunk#" } },
            },
          },
          ...ERROR_RESPONSES,
        },
      },
    },
    async (request, reply) => {
      const body = request.body;
      const info = app.engine.info;
      const n = body.n ?? 1;
      checkGeneration(app, body.model, n);
      const mode = body.reasoning?.mode ?? info.defaultReasoningMode;
      if (mode === "latent") checkLatentAvailable(app, "reasoning.mode");
      if (!info.reasoningModes.includes(mode)) {
        throw new ServeError("invalid_request", `This model supports reasoning modes ${info.reasoningModes.join(", ")}.`, "reasoning.mode");
      }
      if ((body.top_logprobs ?? 0) > 0 && !body.logprobs) {
        throw new ServeError("invalid_request", "logprobs must be true when top_logprobs is set.", "top_logprobs");
      }
      const promptIds = encodeChat(app, body.messages, { mode, kwargs: body.chat_template_kwargs ?? undefined });
      const requested = body.max_completion_tokens ?? body.max_tokens;
      const maxTokens = budgetMaxTokens(info, promptIds, requested, "messages");
      checkQueue(app, n, "n");

      const logprobs = body.logprobs ?? false;
      const sampling = toSampling(body, maxTokens, { enabled: logprobs, top: body.top_logprobs ?? 0 });
      const latent = toLatent(info, body.reasoning);
      const id = requestId("chatcmpl");
      const created = Math.floor(Date.now() / 1000);
      const timeoutMs = app.config.requestTimeoutMs;
      const run = new GenerationRun(app.engine, id, [{ promptIds, sampling }], n, latent, timeoutMs);
      run.abortOnClose(reply);
      const head = { id, object: "chat.completion.chunk", created, model: app.modelName, system_fingerprint: fingerprint };
      const ctx: StreamContext = {
        n,
        includeUsage: body.stream_options?.include_usage ?? false,
        returnThoughts: body.reasoning?.return_thoughts ?? false,
      };
      if (body.stream) return sendEventStream(reply, streamChat(app, run, ctx, head, timeoutMs));

      const outs = await collectChoices(run, timeoutMs);
      const decoded = await app.traceDecoder.decode(outs.map((c) => spanOf(c.thoughts)));
      return {
        id,
        object: "chat.completion",
        created,
        model: app.modelName,
        system_fingerprint: fingerprint,
        choices: outs.map((c, i) => ({
          index: c.index,
          message: { role: "assistant", content: c.text, refusal: null },
          logprobs: logprobs ? { content: chatLogprobs(c.tokens, app.tokenizer), refusal: null } : null,
          finish_reason: c.finish?.reason ?? null,
          thoughts: thoughtsSummary(c.thoughts, { vectors: ctx.returnThoughts, decoded: decoded[i] }),
        })),
        usage: usageOf(outs.map((c) => c.finish), n),
      };
    },
  );
}

/** Per choice: a role chunk, content and thought chunks as they come, a finish chunk carrying
 * the thoughts summary; then usage (when asked) and [DONE]. Thought chunks have an empty delta
 * and the thought in a field of the choice, which the SDKs pass through untouched. */
async function* streamChat(
  app: FastifyInstance,
  run: GenerationRun,
  ctx: StreamContext,
  head: Record<string, unknown>,
  timeoutMs: number,
): AsyncGenerator<string> {
  const encode = chunkEncoder(head, ctx.includeUsage ? { usage: null } : {});
  const chunk = (index: number, fields: Record<string, unknown>) =>
    encode({ index, delta: {}, logprobs: null, finish_reason: null, ...fields });
  const thoughts = run.requests.map((): { logProb: number; vector?: Float32Array }[] => []);
  const finishes: (FinishEvent | null)[] = run.requests.map(() => null);
  for (let i = 0; i < run.requests.length; i++) yield chunk(i, { delta: { role: "assistant", content: "" } });

  for await (const { choice: index, event: e } of run.events()) {
    if (e.type === "token") {
      if (e.text === "" && e.logprob === undefined) continue;
      const lp = e.logprob === undefined ? null : { content: chatLogprobs([{ tokenId: e.tokenId, text: e.text, logprob: e.logprob, top: e.topLogprobs ?? [] }], app.tokenizer), refusal: null };
      yield chunk(index, { delta: { content: e.text }, logprobs: lp });
    } else if (e.type === "thought") {
      thoughts[index]!.push({ logProb: e.logProb, ...(e.vector ? { vector: e.vector } : {}) });
      const thought = { index: e.index, log_prob: e.logProb, ...(e.vector && ctx.returnThoughts ? { vector: encodeThought(e.vector) } : {}) };
      yield chunk(index, { thought });
    } else if (e.type === "finish") {
      finishes[index] = e;
      if (e.tail) yield chunk(index, { delta: { content: e.tail } });
      const [decoded] = await app.traceDecoder.decode([spanOf(thoughts[index]!)]);
      const summary = thoughtsSummary(thoughts[index]!, { vectors: false, decoded });
      yield chunk(index, { finish_reason: e.reason, thoughts: summary });
    } else if (e.type === "error") {
      throw engineErrorToServeError(e);
    }
  }
  if (run.abortReason === "timeout") throw timeoutError(timeoutMs);
  if (ctx.includeUsage) yield sseData({ ...head, choices: [], usage: usageOf(finishes, ctx.n) });
  yield SSE_DONE;
}
