import type { FastifyInstance } from "fastify";
import { ServeError } from "../errors.ts";
import { encodeChat } from "./chat-prompt.ts";
import { checkModel } from "./guards.ts";
import { checkPromptChars, checkPromptTokens, messagesChars, promptCharLimit } from "./prompt-limits.ts";
import { postSchema } from "./response-schemas.ts";
import type { DetokenizeRequest, TokenizeRequest } from "./schemas.ts";

/** POST /tokenize and /detokenize (vLLM's shapes): the model's tokenizer and chat template. */

export async function tokenizeRoutes(app: FastifyInstance): Promise<void> {
  app.post<{ Body: TokenizeRequest }>(
    "/tokenize",
    {
      config: { access: "tokenizer" },
      schema: postSchema("Tokenize a prompt or chat messages", "Tokenizer", "TokenizeRequest", "TokenizeResponse"),
    },
    async (request) => {
      const body = request.body;
      checkModel(app, body.model);
      const hasPrompt = body.prompt !== undefined; // the schema lets exactly one of them through
      checkPromptChars(
        app,
        hasPrompt ? body.prompt!.length : messagesChars(body.messages!),
        hasPrompt ? "prompt" : "messages",
      );
      const mode = body.reasoning_mode ?? app.engine.info.defaultReasoningMode;
      const tokens = hasPrompt
        ? app.tokenizer.encode(body.prompt!)
        : encodeChat(app, body.messages!, {
            mode,
            addGenerationPrompt: body.add_generation_prompt ?? true,
            kwargs: body.chat_template_kwargs,
          }).ids;
      return {
        count: tokens.length,
        max_model_len: app.engine.info.maxContext,
        tokens,
        ...(body.return_token_strs ? { token_strs: tokens.map((t) => app.tokenizer.tokenText(t)) } : {}),
      };
    },
  );

  app.post<{ Body: DetokenizeRequest }>(
    "/detokenize",
    {
      config: { access: "tokenizer" },
      schema: postSchema("Turn token ids back into text", "Tokenizer", "DetokenizeRequest", "DetokenizeResponse"),
    },
    async (request) => {
      const body = request.body;
      checkModel(app, body.model);
      // Every token decodes to at least one character: more than the server would tokenize back is refused.
      checkPromptTokens(app, body.tokens.length, "tokens", promptCharLimit(app));
      const vocab = app.engine.info.vocabSize;
      const bad = body.tokens.findIndex((t) => t >= vocab);
      if (bad >= 0)
        throw new ServeError(
          "invalid_request",
          `Token id ${body.tokens[bad]} is outside the vocabulary (size ${vocab}).`,
          `tokens[${bad}]`,
        );
      return { prompt: app.tokenizer.decode(body.tokens, false) };
    },
  );
}
