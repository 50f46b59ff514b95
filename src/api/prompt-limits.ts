import type { FastifyInstance } from "fastify";
import { ServeError } from "../errors.ts";
import type { ChatMessage } from "./schemas.ts";

/** Bounds on the work a request may ask of the HTTP thread: tokenizing and chat templating run
 * there (a 1 MB body costs hundreds of milliseconds of event loop, during which nothing else is
 * answered). The text is measured before the tokenizer or the template sees it. */

/** Characters per token of the served context when --max-prompt-chars is 0 (auto). */
export const AUTO_CHARS_PER_TOKEN = 16;
/** What the chat template adds around each message (role markers), in characters; it also
 * bounds the cost of many empty messages. */
export const MESSAGE_OVERHEAD_CHARS = 32;

export function promptCharLimit(app: FastifyInstance): number {
  return app.config.maxPromptChars || AUTO_CHARS_PER_TOKEN * app.engine.info.maxContext;
}

export function messagesChars(messages: readonly ChatMessage[]): number {
  let n = 0;
  for (const m of messages) {
    n += MESSAGE_OVERHEAD_CHARS;
    if (typeof m.content === "string") n += m.content.length;
    else if (m.content) for (const p of m.content) n += p.text.length;
  }
  return n;
}

/** 400 context_length_exceeded when the text one request would tokenize is over the limit. */
export function checkPromptChars(app: FastifyInstance, chars: number, param: string): void {
  const limit = promptCharLimit(app);
  if (chars <= limit) return;
  throw new ServeError(
    "context_length_exceeded",
    `The request's text is ${chars} characters; this server tokenizes at most ${limit} per request ` +
      `(--max-prompt-chars; the model's context is ${app.engine.info.maxContext} tokens). Please shorten the ${param}.`,
    param,
  );
}

/** Token ids given directly: more than the context can never be served (and the count bounds
 * detokenizing them). */
export function checkPromptTokens(
  app: FastifyInstance,
  tokens: number,
  param: string,
  limit = app.engine.info.maxContext,
): void {
  if (tokens <= limit) return;
  throw new ServeError(
    "context_length_exceeded",
    `This model's maximum context length is ${app.engine.info.maxContext} tokens. However, the ${param} has ${tokens} tokens` +
      (limit === app.engine.info.maxContext ? "." : ` (at most ${limit} per request).`),
    param,
  );
}
