import { Type, type TSchema } from "@sinclair/typebox";
import { ErrorResponse } from "../http/error-response.ts";
import { jsonOrEventStream } from "./sse.ts";
import { ResponseObject, ResponseStreamEvent } from "./responses-schemas.ts";

/** Response schemas: for the OpenAPI document only. Responses are serialized with JSON.stringify
 * (app.ts), so a field missing here is never silently dropped from a response. */

const Nullable = <T extends TSchema>(s: T) => Type.Union([s, Type.Null()]);

const REASONING_TEXT =
  "The reasoning, apart from the answer: in explicit mode the trace, where the model declares where it ends (manifest reasoning_split); in latent mode with reasoning.return_thoughts, the thoughts decoded by the model's thought decoder. Null when there is none (the model declares no split: all text is in content).";

export const ThoughtsSummary = Type.Object(
  {
    count: Type.Integer({ description: "Thoughts sampled (K per latent span)." }),
    log_prob: Type.Number({ description: "Sum of log_probs: log p(u_1..K | q), the model's likelihood (T_z = 1)." }),
    log_probs: Type.Array(Type.Number(), {
      description:
        "Each thought's exact log p(u_i | context) = log N(u_i; mu_i, sigma_i^2): the model's density at T_z = 1, whatever T_z drew it (what /v1/latent/logprobs recomputes).",
    }),
    temperature: Type.Number({ description: "T_z the thoughts were drawn at." }),
    behaviour_log_probs: Type.Array(Nullable(Type.Number()), {
      description:
        "Each thought's log-density under the distribution that actually drew it, N(mu_i, (T_z sigma_i)^2): the behaviour policy's log-prob for importance ratios. Null at T_z = 0 (u = mu: a point mass, no density).",
    }),
    behaviour_log_prob: Nullable(Type.Number({ description: "Sum of behaviour_log_probs (null at T_z = 0)." })),
    flow_log_det: Type.Optional(
      Type.Number({
        description:
          "log |det dF/de| of the shallow flow at e = F^-1(u) for the K thoughts, when reasoning.return_flow_log_det.",
      }),
    ),
    e_log_prob: Type.Optional(
      Type.Number({
        description: "log p(e | q) = log_prob + flow_log_det: the likelihood in the flow's output space (T_z = 1).",
      }),
    ),
    vectors: Type.Optional(
      Type.Array(Type.String(), { description: "base64 little-endian float32, when reasoning.return_thoughts." }),
    ),
    decoded: Type.Optional(
      Type.String({
        description: "The span's trace text from the model's thought decoder (models that ship one; full spans only).",
      }),
    ),
  },
  { $id: "ThoughtsSummary", title: "ThoughtsSummary", description: "NF-CoT extension: the choice's latent thoughts." },
);

const TopLogprob = Type.Object({
  token: Type.String(),
  logprob: Type.Number(),
  bytes: Nullable(Type.Array(Type.Integer())),
});
const TokenLogprob = Type.Object(
  {
    token: Type.String({
      description:
        'The text this token added to the content ("" for part of a character, or text a stop string cut): the tokens join to the content.',
    }),
    logprob: Type.Number({
      description:
        "The model's own log-prob (raw logits: before logit_bias, penalties and temperature), as vLLM reports.",
    }),
    bytes: Nullable(Type.Array(Type.Integer({ description: "The token's bytes: they join to the content's UTF-8." }))),
    top_logprobs: Type.Array(TopLogprob),
  },
  { title: "TokenLogprob" },
);
const ChatLogprobs = Nullable(Type.Object({ content: Nullable(Type.Array(TokenLogprob)) }));
const PromptLogprobs = Type.Array(
  Nullable(
    Type.Record(
      Type.String({ pattern: "^[0-9]+$" }),
      Type.Object({
        logprob: Type.Number(),
        rank: Nullable(Type.Integer({ minimum: 1 })),
        decoded_token: Type.String(),
      }),
    ),
  ),
  {
    title: "PromptLogprobs",
    description:
      "Extension (vLLM), with prompt_logprobs: per prompt position, null for the first, then {token id: {logprob, rank, decoded_token}} for the prompt's token and the prompt_logprobs most likely tokens.",
  },
);

const FinishReason = Nullable(Type.Union([Type.Literal("stop"), Type.Literal("length")]));

export const Usage = Type.Object(
  {
    prompt_tokens: Type.Integer(),
    completion_tokens: Type.Integer({ description: "Text tokens plus thoughts." }),
    total_tokens: Type.Integer(),
    completion_tokens_details: Type.Object({ reasoning_tokens: Type.Integer({ description: "Thoughts." }) }),
    prompt_tokens_details: Type.Object({ cached_tokens: Type.Integer() }),
  },
  { $id: "Usage", title: "Usage" },
);

const WeightsVersion = Type.String({
  description:
    "NF-CoT extension: the weights version that produced this response (also the X-Weights-Version header); changes with each POST /admin/weights.",
});

const Common = {
  id: Type.String(),
  created: Type.Integer(),
  model: Type.String(),
  system_fingerprint: Type.String(),
  weights_version: Type.Optional(WeightsVersion),
};

export const ChatCompletion = Type.Object(
  {
    ...Common,
    object: Type.Literal("chat.completion"),
    choices: Type.Array(
      Type.Object({
        index: Type.Integer(),
        message: Type.Object({
          role: Type.Literal("assistant"),
          content: Type.String({ description: "The answer. With a reasoning trace split off, the answer alone." }),
          reasoning_content: Nullable(Type.String({ description: REASONING_TEXT })),
          reasoning: Nullable(Type.String({ description: "The same as reasoning_content (vLLM's newer name)." })),
          refusal: Type.Null(),
        }),
        logprobs: ChatLogprobs,
        finish_reason: FinishReason,
        thoughts: Type.Ref("ThoughtsSummary"),
      }),
    ),
    usage: Type.Ref("Usage"),
    prompt_logprobs: Type.Optional(PromptLogprobs),
  },
  { $id: "ChatCompletion", title: "ChatCompletion" },
);

const StreamThought = Type.Object(
  {
    index: Type.Integer(),
    log_prob: Type.Number({ description: "log N(u; mu, sigma^2) (T_z = 1)." }),
    behaviour_log_prob: Nullable(
      Type.Number({ description: "log N(u; mu, (T_z sigma)^2), the density that drew it; null at T_z = 0." }),
    ),
    vector: Type.Optional(Type.String()),
  },
  { description: "NF-CoT extension: one sampled thought. Its chunk has an empty delta, so SDKs ignore it." },
);

export const ChatCompletionChunk = Type.Object(
  {
    ...Common,
    object: Type.Literal("chat.completion.chunk"),
    choices: Type.Array(
      Type.Object({
        index: Type.Integer(),
        delta: Type.Object({
          role: Type.Optional(Type.Literal("assistant")),
          content: Type.Optional(Type.String()),
          reasoning_content: Type.Optional(
            Type.String({ description: "Reasoning text, streamed before the answer's content." }),
          ),
          reasoning: Type.Optional(Type.String({ description: "The same as reasoning_content." })),
        }),
        logprobs: Type.Optional(ChatLogprobs),
        finish_reason: FinishReason,
        thought: Type.Optional(StreamThought),
        thoughts: Type.Optional(Type.Ref("ThoughtsSummary")),
      }),
    ),
    usage: Type.Optional(Nullable(Type.Ref("Usage"))),
  },
  {
    $id: "ChatCompletionChunk",
    title: "ChatCompletionChunk",
    description:
      "One `data:` line of the event stream; the stream ends with `data: [DONE]`. The chunk that carries a choice's finish_reason also carries its thoughts summary (with decoded, without vectors: those come in the thought chunks).",
  },
);

const CompletionLogprobs = Nullable(
  Type.Object({
    tokens: Type.Array(Type.String()),
    token_logprobs: Type.Array(Nullable(Type.Number())),
    top_logprobs: Type.Array(Nullable(Type.Record(Type.String(), Type.Number()))),
    text_offset: Type.Array(
      Type.Integer({
        description: "Character offset of each token's text in the returned text (echoed prompt included).",
      }),
    ),
  }),
);

export const Completion = Type.Object(
  {
    ...Common,
    object: Type.Literal("text_completion"),
    choices: Type.Array(
      Type.Object({
        index: Type.Integer(),
        text: Type.String(),
        logprobs: CompletionLogprobs,
        finish_reason: FinishReason,
        prompt_logprobs: Type.Optional(PromptLogprobs),
        thoughts: Type.Optional(Type.Ref("ThoughtsSummary")),
        thought: Type.Optional(StreamThought),
      }),
    ),
    usage: Type.Optional(Nullable(Type.Ref("Usage"))),
  },
  {
    $id: "Completion",
    title: "Completion",
    description: "The response, or (object text_completion too, as OpenAI does) one chunk of its stream.",
  },
);

export const Model = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal("model"),
    created: Type.Integer(),
    owned_by: Type.String(),
    max_model_len: Type.Integer(),
    nfcot: Type.Object({
      num_thoughts: Type.Integer(),
      thought_dim: Type.Integer(),
      reasoning_modes: Type.Array(Type.String()),
      default_reasoning_mode: Type.String(),
      default_latent_temperature: Type.Number({
        description: "T_z of the thoughts when the request gives no latent_temperature and its temperature is not 0.",
      }),
      greedy_latent_temperature: Type.Number({
        description:
          "T_z of the thoughts when the request's temperature is 0 and it gives no latent_temperature: 0 (u = mu), so a greedy request gives the same answer every time.",
      }),
      reasoning_split: Nullable(
        Type.Unsafe<unknown>({
          description:
            'Where a written trace ends and the answer begins: {"answer": "last_line"} or {"start"?, "end"} markers. Null: the model declares none, all text is content.',
        }),
      ),
      has_thought_decoder: Type.Boolean(),
      latent_available: Type.Boolean({
        description: "False for a text-only model (no NF-CoT extras): only text reasoning modes.",
      }),
      latent_unavailable_reason: Type.Optional(
        Type.String({ description: "Why latent reasoning is unavailable, when it is." }),
      ),
    }),
  },
  { $id: "Model", title: "Model" },
);

export const ModelList = Type.Object(
  { object: Type.Literal("list"), data: Type.Array(Type.Ref("Model")) },
  { $id: "ModelList", title: "ModelList" },
);

export const TokenizeResponse = Type.Object(
  {
    count: Type.Integer(),
    max_model_len: Type.Integer(),
    tokens: Type.Array(Type.Integer()),
    token_strs: Type.Optional(Type.Array(Type.String())),
  },
  { $id: "TokenizeResponse", title: "TokenizeResponse" },
);

export const DetokenizeResponse = Type.Object(
  { prompt: Type.String() },
  { $id: "DetokenizeResponse", title: "DetokenizeResponse" },
);

export const TrajectoryScore = Type.Object(
  {
    index: Type.Integer(),
    thought_log_probs: Type.Array(Type.Number(), { description: "log p(u_i | prompt, u_<i) at T_z = 1." }),
    thought_log_prob: Type.Number(),
    answer_logprobs: Type.Array(Type.Object({ token: Type.String(), logprob: Type.Number() }), {
      description: "The answer's tokens, then EOS.",
    }),
    answer_log_prob: Type.Number(),
    log_prob: Type.Number({ description: "thought_log_prob + answer_log_prob: the policy log-prob (Eq 3.4)." }),
    thought_behaviour_log_probs: Type.Optional(
      Type.Array(Nullable(Type.Number()), {
        description:
          "When latent_temperature > 0: log N(u_i; mu_i, (T_z sigma_i)^2), the density at the T_z that drew them.",
      }),
    ),
    // null where a sum is not finite: a density that underflows (a tiny latent_temperature, or thoughts
    // far outside the flow's range) has no JSON number.
    thought_behaviour_log_prob: Type.Optional(
      Nullable(Type.Number({ description: "Sum of thought_behaviour_log_probs; null when not finite." })),
    ),
    behaviour_log_prob: Type.Optional(
      Nullable(
        Type.Number({
          description:
            "thought_behaviour_log_prob + answer_log_prob (answer tokens at text temperature 1); null when not finite.",
        }),
      ),
    ),
    flow_log_det: Type.Optional(
      Nullable(
        Type.Number({ description: "When return_flow_log_det: log |det dF/de| at e = F^-1(u); null when not finite." }),
      ),
    ),
    e_log_prob: Type.Optional(
      Nullable(
        Type.Number({ description: "thought_log_prob + flow_log_det: log p(e | q) (Eq 3.2); null when not finite." }),
      ),
    ),
  },
  { $id: "TrajectoryScore", title: "TrajectoryScore" },
);

export const LatentLogprobsResponse = Type.Object(
  {
    object: Type.Literal("list"),
    model: Type.String(),
    data: Type.Array(Type.Ref("TrajectoryScore")),
    usage: Type.Object({ prompt_tokens: Type.Integer(), total_tokens: Type.Integer() }),
    weights_version: WeightsVersion,
  },
  { $id: "LatentLogprobsResponse", title: "LatentLogprobsResponse" },
);

export const LatentDecodeResponse = Type.Object(
  {
    object: Type.Literal("latent.decode"),
    model: Type.String(),
    decoded: Type.String(),
    steps: Type.Array(Type.Object({ variable: Type.String(), value: Type.String() }), {
      description: "Per thought slot, up to the decoder's stop token.",
    }),
  },
  { $id: "LatentDecodeResponse", title: "LatentDecodeResponse" },
);

export const RESPONSE_SCHEMAS = [
  ErrorResponse,
  ThoughtsSummary,
  Usage,
  ChatCompletion,
  ChatCompletionChunk,
  Completion,
  Model,
  ModelList,
  TokenizeResponse,
  DetokenizeResponse,
  TrajectoryScore,
  LatentLogprobsResponse,
  LatentDecodeResponse,
  ResponseObject,
  ResponseStreamEvent,
];

const ERROR_DESCRIPTIONS: Record<number, string> = {
  400: "Invalid request (`param` names the field) or context overflow (context_length_exceeded)",
  401: "Missing or wrong API key (when the server has keys)",
  404: "Unknown model (model_not_found) or route",
  413: "Request body over the server's limit",
  429: "Queue full (queue_full); see Retry-After",
  500: "Server or engine error",
  503: "Shutting down or engine not running; see Retry-After",
};

/** Error responses every route documents, in the OpenAI error shape. */
export const ERROR_RESPONSES = Object.fromEntries(
  Object.entries(ERROR_DESCRIPTIONS).map(([status, description]) => [
    status,
    { description, content: { "application/json": { schema: { $ref: "ErrorResponse#" } } } },
  ]),
);

/** A POST route's documented schema: its request body (a registered schema's $id), its 200
 * (a $id, or a whole response object such as jsonOrEventStream's) and the common errors. */
export function postSchema(summary: string, tag: string, body: string, ok: string | Record<string, unknown>) {
  return {
    summary,
    tags: [tag],
    body: { $ref: `${body}#` },
    response: { 200: typeof ok === "string" ? { $ref: `${ok}#` } : ok, ...ERROR_RESPONSES },
  };
}

/** A generation route's schema (OpenAI's tag): the request body, and a 200 that is the whole
 * object as JSON or, with stream: true, its events. */
export function streamingPostSchema(summary: string, body: string, json: string, chunk: string) {
  return postSchema(
    summary,
    "OpenAI",
    body,
    jsonOrEventStream(`A ${json}, or with stream: true an event stream of ${chunk} events.`, json, chunk),
  );
}
