import { Type, type Static, type TSchema } from "@sinclair/typebox";

/** Request schemas: the one source for validation (Fastify's Ajv), the handlers' TypeScript types
 * and the OpenAPI document. Optional OpenAI parameters also accept null, as the OpenAI API does.
 * Response schemas live in response-schemas.ts. */

const Nullable = <T extends TSchema>(s: T) => Type.Union([s, Type.Null()]);
const Opt = <T extends TSchema>(s: T) => Type.Optional(Nullable(s));

export const ReasoningMode = Type.Union([Type.Literal("latent"), Type.Literal("explicit"), Type.Literal("none")], {
  description: "How the model reasons before answering: K latent thoughts, a written trace, or not at all.",
});

export const LatentOptions = {
  latent_temperature: Type.Optional(
    Type.Number({ minimum: 0, maximum: 10, description: "T_z: thoughts are mu + sigma * T_z * z. 0 gives u = mu. Default: the model's (0.9 in the paper)." }),
  ),
  return_thoughts: Type.Optional(
    Type.Boolean({ description: "Return each thought's vector (base64 of little-endian float32) in the choice's thoughts (and in stream thought chunks)." }),
  ),
};

export const Reasoning = Type.Object(
  { mode: Type.Optional(ReasoningMode), ...LatentOptions },
  { title: "Reasoning", description: "NF-CoT extension. mode defaults to the model's default reasoning mode." },
);

/** Sampling parameters shared by chat and text completions. */
const SamplingFields = {
  model: Type.String({ description: "The served model name (GET /v1/models)." }),
  n: Opt(Type.Integer({ minimum: 1, description: "Choices to generate (the server's limit applies)." })),
  seed: Opt(Type.Integer({ minimum: -Number.MAX_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER, description: "Choice i uses seed + i: the same request with a seed gives the same choices." })),
  stop: Opt(Type.Union([Type.String(), Type.Array(Type.String(), { maxItems: 16 })])),
  temperature: Opt(Type.Number({ minimum: 0, maximum: 2 })),
  top_p: Opt(Type.Number({ minimum: 0, maximum: 1 })),
  presence_penalty: Opt(Type.Number({ minimum: -2, maximum: 2 })),
  frequency_penalty: Opt(Type.Number({ minimum: -2, maximum: 2 })),
  user: Opt(Type.String()),
  stream: Opt(Type.Boolean()),
  stream_options: Opt(Type.Object({ include_usage: Type.Optional(Type.Boolean()) })),
  top_k: Opt(Type.Integer({ minimum: -1, description: "Extension: keep the k most likely tokens (0 or -1: off)." })),
  min_p: Opt(Type.Number({ minimum: 0, maximum: 1, description: "Extension." })),
  repetition_penalty: Opt(Type.Number({ exclusiveMinimum: 0, maximum: 10, description: "Extension (1: off)." })),
  ignore_eos: Opt(Type.Boolean({ description: "Extension: keep generating past EOS until max_tokens." })),
  stop_token_ids: Opt(Type.Array(Type.Integer({ minimum: 0 }), { maxItems: 64, description: "Extension: token ids that end a choice." })),
};

const maxTokens = (minimum: number) =>
  Opt(Type.Integer({ minimum, description: "Text tokens to generate at most (thoughts are extra). Default: what fits in the context." }));

const TextPart = Type.Object({ type: Type.Literal("text"), text: Type.String() }, { title: "TextContentPart" });

const ChatTemplateKwargs = Type.Record(Type.String(), Type.Unknown(), {
  description: "Extension (as vLLM): extra variables for the model's chat template, e.g. {\"enable_thinking\": false} for Qwen3.",
});

export const ChatMessage = Type.Object(
  {
    role: Type.Union(["system", "developer", "user", "assistant", "tool"].map((r) => Type.Literal(r))),
    content: Nullable(Type.Union([Type.String(), Type.Array(TextPart)])),
    name: Type.Optional(Type.String()),
    tool_call_id: Type.Optional(Type.String({ description: "A tool message: the call it answers (passed to the chat template)." })),
    tool_calls: Type.Optional(
      Type.Array(
        Type.Object({
          id: Type.String(),
          type: Type.Literal("function"),
          function: Type.Object({ name: Type.String(), arguments: Type.String() }),
        }),
        { description: "An assistant message's earlier tool calls (passed to the chat template)." },
      ),
    ),
  },
  { title: "ChatMessage" },
);
export type ChatMessage = Static<typeof ChatMessage>;

export const ChatCompletionRequest = Type.Object(
  {
    ...SamplingFields,
    messages: Type.Array(ChatMessage, { minItems: 1 }),
    max_tokens: maxTokens(1),
    max_completion_tokens: Opt(Type.Integer({ minimum: 1, description: "Wins over max_tokens." })),
    logprobs: Opt(Type.Boolean({ description: "Log-probabilities of the text tokens (EOS excluded)." })),
    top_logprobs: Opt(Type.Integer({ minimum: 0, maximum: 20 })),
    reasoning: Type.Optional(Reasoning),
    chat_template_kwargs: Type.Optional(ChatTemplateKwargs),
  },
  { $id: "ChatCompletionRequest", title: "ChatCompletionRequest" },
);
export type ChatCompletionRequest = Static<typeof ChatCompletionRequest>;

const PromptInput = Type.Union(
  [
    Type.String(),
    Type.Array(Type.String(), { minItems: 1 }),
    Type.Array(Type.Integer({ minimum: 0 }), { minItems: 1 }),
    Type.Array(Type.Array(Type.Integer({ minimum: 0 }), { minItems: 1 }), { minItems: 1 }),
  ],
  { description: "A prompt or a list of prompts, as text or token ids. A prompt ending in <bot> opens a latent span." },
);

export const CompletionRequest = Type.Object(
  {
    ...SamplingFields,
    prompt: PromptInput,
    max_tokens: maxTokens(0),
    echo: Opt(Type.Boolean({ description: "Prepend the prompt to each choice's text (and its token log-probs when logprobs is set)." })),
    logprobs: Opt(Type.Integer({ minimum: 0, maximum: 20, description: "Log-probs of the sampled tokens and this many alternatives." })),
    suffix: Opt(Type.String({ maxLength: 0, description: "Not supported: must be empty." })),
    best_of: Opt(Type.Integer({ minimum: 1, maximum: 1, description: "Not supported beyond 1." })),
    reasoning: Type.Optional(Type.Object(LatentOptions, { title: "LatentOptions" })),
  },
  { $id: "CompletionRequest", title: "CompletionRequest" },
);
export type CompletionRequest = Static<typeof CompletionRequest>;

export const ThoughtsInput = Type.Union(
  [
    Type.Array(Type.String({ description: "base64 of thought_dim little-endian float32" })),
    Type.Array(Type.Array(Type.Number())),
  ],
  { description: "Exactly num_thoughts thoughts of thought_dim finite numbers each, as base64 float32 or as arrays." },
);

export const Trajectory = Type.Object(
  {
    thoughts: ThoughtsInput,
    answer: Type.Optional(
      Type.String({ description: "The answer text. Its tokens are scored followed by EOS; absent: the thoughts alone are scored." }),
    ),
  },
  { title: "Trajectory" },
);

export const LatentLogprobsRequest = Type.Object(
  {
    model: Type.String(),
    messages: Type.Optional(Type.Array(ChatMessage, { minItems: 1, description: "Rendered with the chat template in latent mode (ends with <bot>)." })),
    prompt: Type.Optional(Type.String({ description: "Raw prompt text; <bot> is appended when it does not end with it." })),
    trajectories: Type.Array(Trajectory, { minItems: 1, maxItems: 1024 }),
  },
  {
    $id: "LatentLogprobsRequest",
    title: "LatentLogprobsRequest",
    description: "Scores trajectories [prompt] <bot> [u_1..u_K] [answer] <eos> teacher-forced. Give messages or prompt.",
  },
);
export type LatentLogprobsRequest = Static<typeof LatentLogprobsRequest>;

export const LatentDecodeRequest = Type.Object(
  { model: Type.String(), thoughts: ThoughtsInput },
  { $id: "LatentDecodeRequest", title: "LatentDecodeRequest" },
);
export type LatentDecodeRequest = Static<typeof LatentDecodeRequest>;

export const TokenizeRequest = Type.Object(
  {
    model: Type.Optional(Type.String()),
    prompt: Type.Optional(Type.String()),
    messages: Type.Optional(Type.Array(ChatMessage, { minItems: 1 })),
    reasoning_mode: Type.Optional(ReasoningMode),
    add_generation_prompt: Type.Optional(Type.Boolean({ default: true })),
    chat_template_kwargs: Type.Optional(ChatTemplateKwargs),
    return_token_strs: Type.Optional(Type.Boolean()),
  },
  { $id: "TokenizeRequest", title: "TokenizeRequest", description: "Give prompt (raw text) or messages (chat template)." },
);
export type TokenizeRequest = Static<typeof TokenizeRequest>;

export const DetokenizeRequest = Type.Object(
  { model: Type.Optional(Type.String()), tokens: Type.Array(Type.Integer({ minimum: 0 })) },
  { $id: "DetokenizeRequest", title: "DetokenizeRequest" },
);
export type DetokenizeRequest = Static<typeof DetokenizeRequest>;

export const ModelParams = Type.Object({ model: Type.String() });
export type ModelParams = Static<typeof ModelParams>;

/** Schemas registered with app.addSchema: they become named OpenAPI components. */
export const REQUEST_SCHEMAS = [
  ChatCompletionRequest,
  CompletionRequest,
  LatentLogprobsRequest,
  LatentDecodeRequest,
  TokenizeRequest,
  DetokenizeRequest,
];
