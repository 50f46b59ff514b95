import { Type, type Static, type TSchema } from "@sinclair/typebox";
import { ReasoningModeSchema } from "../model/manifest.ts";
import { ResponseRequest } from "./responses-schemas.ts";

/** Request schemas: the one source for validation (Fastify's Ajv), the handlers' TypeScript types
 * and the OpenAPI document. Optional OpenAI parameters also accept null, as the OpenAI API does.
 * Response schemas live in response-schemas.ts. */

const Nullable = <T extends TSchema>(s: T) => Type.Union([s, Type.Null()]);
const Opt = <T extends TSchema>(s: T) => Type.Optional(Nullable(s));

/** Exactly one of these fields (Ajv's error names them: see error-handler.ts). */
const exactlyOneOf = (...fields: string[]) => ({ oneOf: fields.map((f) => ({ required: [f] })) });

/** A token id. Titled so that the served document can state the vocabulary's bound
 * (served-document.ts); the routes check it. */
export const TokenId = Type.Integer({ minimum: 0, title: "TokenId" });

/** Text that yields at least one token: a newline or a character outside Unicode's White_Space
 * (what the tokenizer's pre-tokenizer splits on). Whitespace alone is an empty prompt. */
const NON_BLANK = "[^\\t\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
const PromptText = Type.String({
  minLength: 1,
  pattern: NON_BLANK,
  description: "Non-empty: whitespace alone has no tokens.",
});

export const ReasoningMode = Type.Union(ReasoningModeSchema.anyOf, {
  description: "How the model reasons before answering: K latent thoughts, a written trace, or not at all.",
});

export const LatentOptions = {
  latent_temperature: Type.Optional(
    Type.Number({
      minimum: 0,
      maximum: 10,
      description: "T_z: thoughts are mu + sigma * T_z * z. 0 gives u = mu. Default: the model's (0.9 in the paper).",
    }),
  ),
  return_thoughts: Type.Optional(
    Type.Boolean({
      description:
        "Return each thought's vector (base64 of little-endian float32) in the choice's thoughts (and in stream thought chunks).",
    }),
  ),
  return_flow_log_det: Type.Optional(
    Type.Boolean({
      description:
        "Also return each full span's shallow-flow log |det dF/de| at e = F^-1(u) (thoughts.flow_log_det) and log p(e | q) = log p(u | q) + log |det| (thoughts.e_log_prob): the likelihood in the flow's output space. Models that ship the flow graphs.",
    }),
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
  seed: Opt(
    Type.Integer({
      minimum: -Number.MAX_SAFE_INTEGER,
      maximum: Number.MAX_SAFE_INTEGER,
      description: "Choice i uses seed + i: the same request with a seed gives the same choices.",
    }),
  ),
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
  // Any id: one outside the vocabulary is never sampled, so it never stops anything.
  stop_token_ids: Opt(
    Type.Array(Type.Integer({ minimum: 0 }), { maxItems: 64, description: "Extension: token ids that end a choice." }),
  ),
  logit_bias: Opt(
    Type.Record(Type.String({ pattern: "^[0-9]+$" }), Type.Number({ minimum: -100, maximum: 100 }), {
      additionalProperties: false,
      description:
        "Token id (as a string) -> bias in [-100, 100] added to the model's logits before sampling (greedy too). Reported logprobs stay the model's own, before the bias (vLLM's default). Ids outside the vocabulary are a 400.",
    }),
  ),
  min_tokens: Opt(
    Type.Integer({
      minimum: 0,
      description:
        "Extension (vLLM): EOS and stop_token_ids cannot end a choice before this many text tokens, and stop strings match only in text generated after them. At most max_tokens.",
    }),
  ),
  return_tokens_as_token_ids: Opt(
    Type.Boolean({
      description:
        "Extension (vLLM): every token string in logprobs (and top_logprobs, and prompt_logprobs' decoded_token) is \"token_id:<id>\", which names special tokens (their text is empty) and parts of a character too. Bytes and text offsets stay the text's.",
    }),
  ),
  prompt_logprobs: Opt(
    Type.Integer({
      minimum: 0,
      maximum: 20,
      description:
        "Extension (vLLM): log-probs of the prompt's tokens: `prompt_logprobs` is null for the first position, then per position {token id: {logprob, rank, decoded_token}} for the prompt's token and this many most likely tokens. Not with stream: true.",
    }),
  ),
};

const maxTokens = (minimum: number) =>
  Opt(
    Type.Integer({
      minimum,
      description:
        "Completion tokens at most, reasoning included (as OpenAI counts it): a latent prompt's K thoughts count, so it needs at least K + 1 (400 naming this field otherwise). Default: what fits in the context.",
    }),
  );

const TOOLS_NOTE = "Refused (400 unsupported_parameter) unless the model's chat template reads `tools`.";

/** OpenAI's tool fields: passed to a chat template that reads `tools` (no tool-call parsing of the
 * output); refused for a template that does not. */
const ToolFields = {
  tools: Opt(
    Type.Array(
      Type.Object({
        type: Type.Literal("function"),
        function: Type.Object({
          name: Type.String(),
          description: Type.Optional(Type.String()),
          parameters: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
          strict: Type.Optional(Nullable(Type.Boolean())),
        }),
      }),
      { description: `${TOOLS_NOTE} Given to the template as they are; the output is not parsed into tool_calls.` },
    ),
  ),
  tool_choice: Opt(
    Type.Union(
      [
        Type.Literal("none"),
        Type.Literal("auto"),
        Type.Literal("required"),
        Type.Object({ type: Type.Literal("function"), function: Type.Object({ name: Type.String() }) }),
      ],
      { description: `${TOOLS_NOTE} "required" and a named function are always refused (no constrained decoding).` },
    ),
  ),
  parallel_tool_calls: Opt(Type.Boolean({ description: TOOLS_NOTE })),
  functions: Opt(
    Type.Array(Type.Unknown(), {
      description: "Deprecated by OpenAI for tools: always refused (400 unsupported_parameter).",
    }),
  ),
  function_call: Opt(
    Type.Unknown({ description: "Deprecated by OpenAI for tool_choice: always refused (400 unsupported_parameter)." }),
  ),
};

const TextPart = Type.Object({ type: Type.Literal("text"), text: Type.String() }, { title: "TextContentPart" });

const ChatTemplateKwargs = Type.Record(Type.String(), Type.Unknown(), {
  description:
    'Extension (as vLLM): extra variables for the model\'s chat template, e.g. {"enable_thinking": false} for Qwen3.',
});

export const ChatMessage = Type.Object(
  {
    role: Type.Union(["system", "developer", "user", "assistant", "tool"].map((r) => Type.Literal(r))),
    content: Nullable(Type.Union([Type.String(), Type.Array(TextPart)])),
    name: Type.Optional(Type.String()),
    tool_call_id: Type.Optional(
      Type.String({ description: "A tool message: the call it answers (passed to the chat template)." }),
    ),
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
    max_completion_tokens: Opt(
      Type.Integer({ minimum: 1, description: "Wins over max_tokens; the same rule (thoughts count)." }),
    ),
    logprobs: Opt(Type.Boolean({ description: "Log-probabilities of the text tokens (EOS excluded)." })),
    top_logprobs: Opt(Type.Integer({ minimum: 0, maximum: 20, description: "Needs logprobs: true when over 0." })),
    reasoning: Opt(Reasoning),
    chat_template_kwargs: Type.Optional(ChatTemplateKwargs),
    ...ToolFields,
    response_format: Opt(
      Type.Object(
        {
          type: Type.Union([Type.Literal("text"), Type.Literal("json_object"), Type.Literal("json_schema")]),
          json_schema: Type.Optional(Type.Unknown()),
        },
        {
          description:
            'Only {"type": "text"}: json_object and json_schema are refused (400 unsupported_parameter): there is no structured-output decoding.',
        },
      ),
    ),
  },
  {
    $id: "ChatCompletionRequest",
    title: "ChatCompletionRequest",
    // top_logprobs over 0 needs logprobs: true (as OpenAI's API).
    if: { properties: { top_logprobs: { type: "integer", minimum: 1 } }, required: ["top_logprobs"] },
    then: {
      properties: { logprobs: { const: true, description: "logprobs must be true when top_logprobs is set." } },
      required: ["logprobs"],
      description: "logprobs must be true when top_logprobs is set.",
    },
  },
);
export type ChatCompletionRequest = Static<typeof ChatCompletionRequest>;

const PromptInput = Type.Union(
  [
    PromptText,
    Type.Array(PromptText, { minItems: 1 }),
    Type.Array(TokenId, { minItems: 1 }),
    Type.Array(Type.Array(TokenId, { minItems: 1 }), { minItems: 1 }),
  ],
  { description: "A prompt or a list of prompts, as text or token ids. A prompt ending in <bot> opens a latent span." },
);

export const CompletionRequest = Type.Object(
  {
    ...SamplingFields,
    prompt: PromptInput,
    max_tokens: maxTokens(0),
    echo: Opt(
      Type.Boolean({
        description: "Prepend the prompt to each choice's text (and its token log-probs when logprobs is set).",
      }),
    ),
    logprobs: Opt(
      Type.Integer({
        minimum: 0,
        maximum: 20,
        description: "Log-probs of the sampled tokens and this many alternatives.",
      }),
    ),
    suffix: Opt(Type.String({ maxLength: 0, description: "Not supported: must be empty." })),
    best_of: Opt(Type.Integer({ minimum: 1, maximum: 1, description: "Not supported beyond 1." })),
    reasoning: Opt(Type.Object(LatentOptions, { title: "LatentOptions" })),
  },
  { $id: "CompletionRequest", title: "CompletionRequest" },
);
export type CompletionRequest = Static<typeof CompletionRequest>;

export const ThoughtsInput = Type.Union(
  [
    Type.Array(Type.String({ description: "base64 of thought_dim little-endian float32" })),
    Type.Array(Type.Array(Type.Number())),
  ],
  {
    title: "ThoughtsInput",
    description: "Exactly num_thoughts thoughts of thought_dim finite numbers each, as base64 float32 or as arrays.",
  },
);

export const Trajectory = Type.Object(
  {
    thoughts: ThoughtsInput,
    answer: Type.Optional(
      Type.String({
        description: "The answer text. Its tokens are scored followed by EOS; absent: the thoughts alone are scored.",
      }),
    ),
  },
  { title: "Trajectory" },
);

export const LatentLogprobsRequest = Type.Object(
  {
    model: Type.String(),
    messages: Type.Optional(
      Type.Array(ChatMessage, {
        minItems: 1,
        description: "Rendered with the chat template in latent mode (ends with <bot>).",
      }),
    ),
    prompt: Type.Optional(
      Type.String({ description: "Raw prompt text; <bot> is appended when it does not end with it." }),
    ),
    trajectories: Type.Array(Trajectory, { minItems: 1, maxItems: 1024 }),
    latent_temperature: Type.Optional(
      Type.Number({
        minimum: 0,
        maximum: 10,
        description:
          "T_z the thoughts were drawn at: adds each thought's behaviour log-density log N(u; mu, (T_z sigma)^2) beside the T_z = 1 one. Absent or 0: no behaviour fields (at T_z = 0, u = mu has no density).",
      }),
    ),
    return_flow_log_det: Type.Optional(
      Type.Boolean({
        description:
          "Also return flow_log_det and e_log_prob (full spans of K thoughts; models that ship the flow graphs).",
      }),
    ),
  },
  {
    $id: "LatentLogprobsRequest",
    title: "LatentLogprobsRequest",
    description:
      "Scores trajectories [prompt] <bot> [u_1..u_K] [answer] <eos> teacher-forced. Give exactly one of messages and prompt.",
    ...exactlyOneOf("messages", "prompt"),
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
  {
    $id: "TokenizeRequest",
    title: "TokenizeRequest",
    description: "Give exactly one of prompt (raw text) and messages (chat template).",
    ...exactlyOneOf("prompt", "messages"),
  },
);
export type TokenizeRequest = Static<typeof TokenizeRequest>;

export const DetokenizeRequest = Type.Object(
  { model: Type.Optional(Type.String()), tokens: Type.Array(TokenId) },
  { $id: "DetokenizeRequest", title: "DetokenizeRequest" },
);
export type DetokenizeRequest = Static<typeof DetokenizeRequest>;

export const ModelParams = Type.Object({ model: Type.String() });
export type ModelParams = Static<typeof ModelParams>;

/** Schemas registered with app.addSchema: they become named OpenAPI components. */
export const REQUEST_SCHEMAS = [
  ChatCompletionRequest,
  CompletionRequest,
  ResponseRequest,
  LatentLogprobsRequest,
  LatentDecodeRequest,
  TokenizeRequest,
  DetokenizeRequest,
];
