import type { FastifyInstance } from "fastify";
import { ServeError } from "../errors.ts";
import { replySplit } from "../model/model-info.ts";
import type { TemplateMessage } from "../model/chat-template.ts";
import type { ReasoningMode } from "../model/manifest.ts";
import { encodeChat } from "./chat-prompt.ts";
import { requestId, type Generation } from "./generation.ts";
import { checkGeneration, checkLatentAvailable } from "./guards.ts";
import { checkPromptChars, messagesChars } from "./prompt-limits.ts";
import { streamingPostSchema } from "./response-schemas.ts";
import type { ResponseRequest as Body } from "./responses-schemas.ts";
import { budgetMaxTokens, toLatent, toSampling } from "./sampling.ts";
import { sendEventStream, sseEvent } from "./sse.ts";
import { encodeThought, parseThoughts } from "./thoughts.ts";
import type { ThoughtsSummary } from "./thoughts-summary.ts";

/** POST /v1/responses: OpenAI's Responses API over the generation service. `reasoning.effort`
 * picks the reasoning mode; the output is a reasoning item (the trace or the decoded thoughts; a
 * latent item's thoughts in encrypted_content when asked) and the assistant message. A latent
 * reasoning item sent back in the input puts its thoughts back in the conversation: the next turn
 * is computed on them (the engine's prefix cache holds them), not on newly sampled ones. */

const EFFORT_MODE: Record<string, ReasoningMode> = {
  minimal: "none",
  low: "latent",
  medium: "latent",
  high: "explicit",
};
const ENCRYPTED = "reasoning.encrypted_content";
/** The thoughts' carrier: the model's name (a payload from another model is refused) and the vectors. */
const PAYLOAD_PREFIX = "nfcot1:";

function modeOf(app: FastifyInstance, r: Body["reasoning"]): ReasoningMode {
  const info = app.engine.info;
  const wanted = r?.mode ?? (r?.effort ? EFFORT_MODE[r.effort]! : info.defaultReasoningMode);
  if (r?.mode !== undefined) {
    if (wanted === "latent") checkLatentAvailable(app, "reasoning.mode");
    if (!info.reasoningModes.includes(wanted)) {
      throw new ServeError(
        "invalid_request",
        `This model supports reasoning modes ${info.reasoningModes.join(", ")}.`,
        "reasoning.mode",
      );
    }
    return wanted;
  }
  return info.reasoningModes.includes(wanted) ? wanted : info.defaultReasoningMode;
}

export function encodePayload(model: string, vectors: string[]): string {
  return PAYLOAD_PREFIX + Buffer.from(JSON.stringify({ model, thoughts: vectors })).toString("base64");
}

function decodePayload(app: FastifyInstance, s: string, param: string): Float32Array[] {
  let parsed: { model?: unknown; thoughts?: unknown } | null = null;
  if (s.startsWith(PAYLOAD_PREFIX)) {
    try {
      parsed = JSON.parse(Buffer.from(s.slice(PAYLOAD_PREFIX.length), "base64").toString("utf8"));
    } catch {
      parsed = null;
    }
  }
  if (!parsed || !Array.isArray(parsed.thoughts) || !parsed.thoughts.every((t) => typeof t === "string")) {
    throw new ServeError("invalid_request", "encrypted_content is not a reasoning item this server returned.", param);
  }
  if (parsed.model !== app.modelName) {
    throw new ServeError(
      "invalid_request",
      `encrypted_content holds thoughts of the model '${String(parsed.model)}', not of '${app.modelName}'.`,
      param,
    );
  }
  const info = app.engine.info;
  return parseThoughts(parsed.thoughts as string[], info.numThoughts, info.thoughtDim, param);
}

/** The input as chat messages: instructions first (system), text parts joined, and a latent
 * reasoning item's thoughts attached to the assistant message that follows it. */
function toMessages(app: FastifyInstance, body: Body): TemplateMessage[] {
  const out: TemplateMessage[] = body.instructions ? [{ role: "system", content: body.instructions }] : [];
  if (typeof body.input === "string") return [...out, { role: "user", content: body.input }];
  let thoughts: { vectors: Float32Array[]; param: string } | null = null;
  body.input.forEach((item, i) => {
    if (item.type === "reasoning") {
      if (item.encrypted_content)
        thoughts = {
          vectors: decodePayload(app, item.encrypted_content, `input[${i}].encrypted_content`),
          param: `input[${i}]`,
        };
      return;
    }
    const content = typeof item.content === "string" ? item.content : item.content.map((p) => p.text).join("\n");
    if (item.role === "assistant" && thoughts) {
      out.push({ role: "assistant", content, thoughts: thoughts.vectors });
      thoughts = null;
    } else out.push({ role: item.role, content });
  });
  if (thoughts)
    throw new ServeError(
      "invalid_request",
      "A reasoning item must be followed by the assistant message it reasoned for.",
      (thoughts as { param: string }).param,
    );
  return out;
}

/** What this server cannot honour on /v1/responses is refused, never silently ignored. */
function checkResponseParameters(body: Body): void {
  const refuse = (param: string, message: string) => new ServeError("unsupported_parameter", message, param);
  if (body.tools != null) throw refuse("tools", "Tools are not supported on /v1/responses.");
  if (body.tool_choice != null) throw refuse("tool_choice", "Tools are not supported on /v1/responses.");
  if (body.previous_response_id != null) {
    throw refuse(
      "previous_response_id",
      "Responses are not stored: send the earlier output items (the reasoning item included) back in input.",
    );
  }
  if (body.background === true)
    throw refuse("background", "Responses are not stored: background mode is not supported.");
  const format = body.text?.format?.type;
  if (format != null && format !== "text") {
    throw refuse(
      "text.format",
      `text.format '${format}' is not supported: this server has no structured-output decoding.`,
    );
  }
}

const outputText = (text: string) => ({ type: "output_text", text, annotations: [], logprobs: [] });

export async function responsesRoutes(app: FastifyInstance): Promise<void> {
  app.post<{ Body: Body }>(
    "/v1/responses",
    {
      schema: streamingPostSchema(
        "Create a model response",
        "ResponseRequest",
        "ResponseObject",
        "ResponseStreamEvent",
      ),
    },
    async (request, reply) => {
      const body = request.body;
      checkGeneration(app, body);
      checkResponseParameters(body);
      const info = app.engine.info;
      const mode = modeOf(app, body.reasoning);
      const messages = toMessages(app, body);
      checkPromptChars(app, messagesChars(messages as Parameters<typeof messagesChars>[0]), "input");
      const prompt = encodeChat(app, messages as Parameters<typeof encodeChat>[1], { mode });
      const maxTokens = budgetMaxTokens(
        info,
        prompt,
        { value: body.max_output_tokens, param: "max_output_tokens" },
        "input",
      );
      const encrypted = mode === "latent" && (body.include ?? []).includes(ENCRYPTED);
      const sampling = toSampling({ temperature: body.temperature, top_p: body.top_p, seed: body.seed }, maxTokens, {
        enabled: false,
        top: 0,
      });
      const gen = app.generation.start({
        reply,
        idPrefix: "resp",
        prompts: [{ prompt, sampling }],
        n: 1,
        latent: toLatent(
          info,
          { latent_temperature: body.reasoning?.latent_temperature, return_thoughts: encrypted },
          body.temperature,
        ),
        returnThoughts: encrypted,
        sizeParam: "input",
        reasoning: {
          split: replySplit(info, mode),
          decodedThoughts: mode === "latent" && info.hasThoughtDecoder,
        },
      });
      const shape = new ResponseShape(app, body, gen, mode);
      if (body.stream) return sendEventStream(reply, shape.events(encrypted));
      const [c] = await gen.collect();
      return shape.response(
        c!.reasoning,
        c!.text,
        c!.finishReason,
        c!.thoughts,
        encrypted && c!.thoughts.vectors ? c!.thoughts.vectors : null,
      );
    },
  );
}

/** The response object and its stream of events. */
class ResponseShape {
  readonly reasoningId = requestId("rs");
  readonly messageId = requestId("msg");
  private seq = 0;

  constructor(
    private readonly app: FastifyInstance,
    private readonly body: Body,
    private readonly gen: Generation,
    private readonly mode: ReasoningMode,
  ) {}

  reasoningItem(text: string | null, status: string, thoughts: ThoughtsSummary | null, vectors: string[] | null) {
    return {
      type: "reasoning",
      id: this.reasoningId,
      summary: [],
      content: text ? [{ type: "reasoning_text", text }] : [],
      encrypted_content: vectors ? encodePayload(this.app.modelName, vectors) : null,
      status,
      ...(thoughts && thoughts.count > 0 ? { thoughts: { ...thoughts, vectors: undefined } } : {}),
    };
  }

  messageItem(text: string | null, status: string) {
    return {
      type: "message",
      id: this.messageId,
      role: "assistant",
      status,
      content: text === null ? [] : [outputText(text)],
    };
  }

  response(
    reasoning: string | null,
    text: string | null,
    finish: string | null,
    thoughts: ThoughtsSummary | null,
    vectors: string[] | null,
    done = true,
  ) {
    const incomplete = finish === "length";
    const status = !done ? "in_progress" : incomplete ? "incomplete" : "completed";
    const hasReasoning = reasoning !== null || (thoughts?.count ?? 0) > 0;
    const u = done ? this.gen.usage : null;
    return {
      id: this.gen.id,
      object: "response",
      created_at: this.gen.created,
      status,
      model: this.app.modelName,
      output: done
        ? [
            ...(hasReasoning ? [this.reasoningItem(reasoning, "completed", thoughts, vectors)] : []),
            this.messageItem(text ?? "", status),
          ]
        : [],
      usage: u && {
        input_tokens: u.prompt_tokens,
        input_tokens_details: { cached_tokens: u.prompt_tokens_details.cached_tokens },
        output_tokens: u.completion_tokens,
        output_tokens_details: { reasoning_tokens: u.completion_tokens_details.reasoning_tokens },
        total_tokens: u.total_tokens,
      },
      incomplete_details: incomplete ? { reason: "max_output_tokens" } : null,
      error: null,
      instructions: this.body.instructions ?? null,
      max_output_tokens: this.body.max_output_tokens ?? null,
      temperature: this.body.temperature ?? null,
      top_p: this.body.top_p ?? null,
      reasoning: { effort: this.body.reasoning?.effort ?? null, summary: null, mode: this.mode },
      parallel_tool_calls: false,
      tool_choice: "none",
      tools: [],
      text: { format: { type: "text" } },
      store: false,
      previous_response_id: null,
      metadata: this.body.metadata ?? null,
      weights_version: this.gen.weightsVersion,
    };
  }

  private event(type: string, fields: Record<string, unknown>): string {
    return sseEvent({ type, sequence_number: this.seq++, ...fields });
  }

  /** created, in_progress; the reasoning item (opened by the first thought or reasoning text,
   * closed by the answer's first text); the message item with its text deltas; completed. */
  async *events(encrypted: boolean): AsyncGenerator<string> {
    yield this.event("response.created", { response: this.response(null, null, null, null, null, false) });
    yield this.event("response.in_progress", { response: this.response(null, null, null, null, null, false) });
    let reasoning = null as string | null;
    let text = null as string | null;
    let reasoningOpen = false;
    let reasoningDone = false;
    const vectors: string[] = [];
    const at = { reasoning: 0, message: 0 };
    const openReasoning = function* (this: ResponseShape) {
      if (reasoningOpen || reasoningDone) return;
      reasoningOpen = true;
      at.reasoning = 0;
      yield this.event("response.output_item.added", {
        output_index: 0,
        item: this.reasoningItem(null, "in_progress", null, null),
      });
    }.bind(this);
    const closeReasoning = function* (this: ResponseShape, thoughts: ThoughtsSummary | null) {
      if (!reasoningOpen) return;
      reasoningOpen = false;
      reasoningDone = true;
      if (reasoning !== null)
        yield this.event("response.reasoning_text.done", {
          item_id: this.reasoningId,
          output_index: 0,
          content_index: 0,
          text: reasoning,
        });
      const item = this.reasoningItem(reasoning, "completed", thoughts, encrypted && vectors.length ? vectors : null);
      yield this.event("response.output_item.done", { output_index: 0, item });
    }.bind(this);
    const openMessage = function* (this: ResponseShape) {
      if (text !== null) return;
      text = "";
      at.message = reasoningDone ? 1 : 0;
      yield this.event("response.output_item.added", {
        output_index: at.message,
        item: this.messageItem(null, "in_progress"),
      });
      yield this.event("response.content_part.added", {
        item_id: this.messageId,
        output_index: at.message,
        content_index: 0,
        part: outputText(""),
      });
    }.bind(this);

    for await (const e of this.gen.events()) {
      if (e.type === "thought") {
        yield* openReasoning();
        if (e.thought.vector) vectors.push(encodeThought(e.thought.vector));
      } else if (e.type === "text" && e.channel === "reasoning") {
        yield* openReasoning();
        reasoning = (reasoning ?? "") + e.text;
        yield this.event("response.reasoning_text.delta", {
          item_id: this.reasoningId,
          output_index: 0,
          content_index: 0,
          delta: e.text,
        });
      } else if (e.type === "text") {
        if (e.text === "") continue;
        yield* closeReasoning(null);
        yield* openMessage();
        text += e.text;
        yield this.event("response.output_text.delta", {
          item_id: this.messageId,
          output_index: at.message,
          content_index: 0,
          delta: e.text,
        });
      } else {
        yield* closeReasoning(e.thoughts);
        yield* openMessage();
        const status = e.reason === "length" ? "incomplete" : "completed";
        yield this.event("response.output_text.done", {
          item_id: this.messageId,
          output_index: at.message,
          content_index: 0,
          text,
        });
        yield this.event("response.content_part.done", {
          item_id: this.messageId,
          output_index: at.message,
          content_index: 0,
          part: outputText(text!),
        });
        yield this.event("response.output_item.done", {
          output_index: at.message,
          item: this.messageItem(text, status),
        });
        const final = this.response(
          reasoning,
          text,
          e.reason,
          e.thoughts,
          encrypted && vectors.length ? vectors : null,
        );
        yield this.event(status === "completed" ? "response.completed" : "response.incomplete", { response: final });
      }
    }
  }
}
