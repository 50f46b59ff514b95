import type { FastifyInstance } from "fastify";
import { ServeError } from "../errors.ts";
import { ChatTemplateError, type RenderOptions, type TemplateMessage } from "../model/chat-template.ts";
import { chatPrompt, type Prompt } from "../model/prompt.ts";
import type { ChatMessage } from "./schemas.ts";

/** Chat messages -> the prompt through the model's chat template. Content strings, text parts
 * and null content are shaped for the template by the renderer; special tokens typed in a
 * message stay text. A template that refuses the messages is the client's 400. */
export function encodeChat(app: FastifyInstance, messages: ChatMessage[], opts: RenderOptions): Prompt {
  try {
    return chatPrompt(app.tokenizer, app.engine.info, messages as TemplateMessage[], opts);
  } catch (e) {
    if (e instanceof ChatTemplateError) throw new ServeError("invalid_request", e.message, e.param);
    throw e;
  }
}
