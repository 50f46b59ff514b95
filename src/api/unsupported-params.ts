import type { FastifyInstance } from "fastify";
import { ServeError } from "../errors.ts";
import type { ChatCompletionRequest, CompletionRequest } from "./schemas.ts";

/** OpenAI parameters that are valid but that this server or the served model cannot honour are
 * refused with 400 `unsupported_parameter` naming the parameter, never silently ignored (a
 * client would take a plain-text answer for a tool call or a schema-checked object). */

const refuse = (param: string, message: string) => new ServeError("unsupported_parameter", message, param);

const given = (v: unknown): boolean => v !== undefined && v !== null;

/** Shared by both generation routes. */
function checkCommon(app: FastifyInstance, body: ChatCompletionRequest | CompletionRequest): void {
  if (given(body.stream_options) && body.stream !== true) {
    throw refuse("stream_options", "The 'stream_options' parameter is only allowed when 'stream' is true.");
  }
  if (given(body.prompt_logprobs) && body.stream === true) {
    throw refuse("prompt_logprobs", "prompt_logprobs are not available with stream: true.");
  }
  const vocab = app.engine.info.vocabSize;
  for (const id of Object.keys(body.logit_bias ?? {})) {
    if (Number(id) >= vocab) {
      throw new ServeError(
        "invalid_request",
        `logit_bias names token id ${id}, outside the vocabulary (size ${vocab}).`,
        "logit_bias",
      );
    }
  }
}

/** Chat: tools only for a template that reads them, never forced; no structured output.
 * Returns the tools to render into the prompt (undefined: none). */
export function checkChatParameters(app: FastifyInstance, body: ChatCompletionRequest): unknown[] | undefined {
  checkCommon(app, body);
  for (const legacy of ["functions", "function_call"] as const) {
    if (given(body[legacy])) throw refuse(legacy, `'${legacy}' is not supported: OpenAI replaced it with 'tools'.`);
  }
  const toolsAsked = given(body.tools) || given(body.tool_choice) || given(body.parallel_tool_calls);
  if (toolsAsked && !app.tokenizer.template.readsTools) {
    const param = given(body.tools) ? "tools" : given(body.tool_choice) ? "tool_choice" : "parallel_tool_calls";
    throw refuse(param, `The model '${app.modelName}' does not support tools: its chat template does not read them.`);
  }
  const choice = body.tool_choice;
  if (choice === "required" || (typeof choice === "object" && choice !== null)) {
    throw refuse(
      "tool_choice",
      "tool_choice 'required' or a named function is not supported: this server cannot force a tool call.",
    );
  }
  const format = body.response_format?.type;
  if (format === "json_object" || format === "json_schema") {
    throw refuse(
      "response_format",
      `response_format '${format}' is not supported: this server has no structured-output decoding. Use {"type": "text"}.`,
    );
  }
  return body.tools && body.tools.length > 0 && choice !== "none" ? body.tools : undefined;
}

/** Completions: the reasoning mode is the prompt's (a prompt ending in <bot> opens a latent span),
 * so `reasoning.mode` is refused; the latent options are honoured when a span opens, and refused
 * on a model without latent reasoning. */
export function checkCompletionParameters(app: FastifyInstance, body: CompletionRequest): void {
  checkCommon(app, body);
  const reasoning = body.reasoning as Record<string, unknown> | null | undefined;
  if (reasoning && given(reasoning["mode"])) {
    throw refuse(
      "reasoning.mode",
      "reasoning.mode is not supported on /v1/completions: the prompt sets the mode (end it with <bot> to open a latent span), or use /v1/chat/completions.",
    );
  }
  const latentUnavailable = app.engine.info.latentUnavailable;
  if (reasoning && latentUnavailable !== null) {
    throw refuse("reasoning", latentUnavailable);
  }
}
