import { Type, type Static, type TSchema } from "@sinclair/typebox";

/** POST /v1/responses: the request and the response object (OpenAI's Responses API, the subset a
 * text model serves), with NF-CoT's reasoning item. Registered by the route (responses.ts). */

const Nullable = <T extends TSchema>(s: T) => Type.Union([s, Type.Null()]);
const Opt = <T extends TSchema>(s: T) => Type.Optional(Nullable(s));

const InputText = Type.Object({
  type: Type.Union([Type.Literal("input_text"), Type.Literal("output_text")]),
  text: Type.String(),
});

const InputMessage = Type.Object(
  {
    type: Type.Optional(Type.Literal("message")),
    role: Type.Union(["user", "assistant", "system", "developer"].map((r) => Type.Literal(r))),
    content: Type.Union([Type.String(), Type.Array(InputText)]),
    id: Type.Optional(Type.String()),
    status: Type.Optional(Type.String()),
  },
  { title: "ResponseInputMessage" },
);

export const ReasoningText = Type.Object({ type: Type.Literal("reasoning_text"), text: Type.String() });

const InputReasoning = Type.Object(
  {
    type: Type.Literal("reasoning"),
    id: Type.Optional(Type.String()),
    summary: Type.Optional(Type.Array(Type.Object({ type: Type.String(), text: Type.String() }))),
    content: Opt(Type.Array(ReasoningText)),
    encrypted_content: Opt(
      Type.String({
        description:
          "A latent reasoning item's thoughts, as this server returned them: sent back before the assistant message it preceded, the conversation continues with those thoughts (prefix-cached), not re-sampled ones. Opaque: anything else is a 400 naming it.",
      }),
    ),
    status: Type.Optional(Type.String()),
  },
  { title: "ResponseInputReasoning" },
);

export const Effort = Type.Union(
  ["minimal", "low", "medium", "high"].map((e) => Type.Literal(e)),
  {
    description:
      "Mapped to the model's reasoning modes: minimal -> none, low and medium -> latent (K thoughts), high -> explicit (a written trace). A mode the model lacks falls back to its default mode.",
  },
);

export const ResponseRequest = Type.Object(
  {
    model: Type.String(),
    input: Type.Union([
      Type.String({ minLength: 1 }),
      Type.Array(Type.Union([InputMessage, InputReasoning]), { minItems: 1 }),
    ]),
    instructions: Opt(Type.String({ description: "A system message before the input." })),
    max_output_tokens: Opt(
      Type.Integer({
        minimum: 1,
        description:
          "Output tokens at most, reasoning (thoughts, trace) included: a latent request needs at least K + 1 (400 naming this field otherwise).",
      }),
    ),
    temperature: Opt(Type.Number({ minimum: 0, maximum: 2 })),
    top_p: Opt(Type.Number({ minimum: 0, maximum: 1 })),
    stream: Opt(Type.Boolean()),
    store: Opt(
      Type.Boolean({
        description: "Responses are never stored: true is accepted and has no effect (store is false in the response).",
      }),
    ),
    include: Opt(
      Type.Array(Type.String(), {
        description:
          'With "reasoning.encrypted_content", a latent reasoning item carries its thoughts (send the item back to continue the conversation).',
      }),
    ),
    reasoning: Opt(
      Type.Object({
        effort: Opt(Effort),
        summary: Opt(Type.String()),
        mode: Type.Optional(
          Type.Union([Type.Literal("latent"), Type.Literal("explicit"), Type.Literal("none")], {
            description: "NF-CoT extension: wins over effort.",
          }),
        ),
        latent_temperature: Type.Optional(
          Type.Number({
            minimum: 0,
            maximum: 10,
            description: "T_z of the thoughts (see the chat completions' reasoning).",
          }),
        ),
      }),
    ),
    seed: Opt(
      Type.Integer({
        minimum: -Number.MAX_SAFE_INTEGER,
        maximum: Number.MAX_SAFE_INTEGER,
        description: "Extension (as vLLM).",
      }),
    ),
    user: Opt(Type.String()),
    metadata: Opt(Type.Record(Type.String(), Type.String())),
    // Known and refused (400 unsupported_parameter naming them; the served document says so).
    tools: Opt(Type.Array(Type.Unknown())),
    tool_choice: Opt(Type.Unknown()),
    previous_response_id: Opt(Type.String()),
    background: Opt(Type.Boolean()),
    text: Opt(Type.Object({ format: Opt(Type.Object({ type: Type.String() }, { additionalProperties: true })) })),
  },
  { $id: "ResponseRequest", title: "ResponseRequest" },
);
export type ResponseRequest = Static<typeof ResponseRequest>;

const OutputText = Type.Object({
  type: Type.Literal("output_text"),
  text: Type.String(),
  annotations: Type.Array(Type.Unknown()),
  logprobs: Type.Array(Type.Unknown()),
});

/** One event of a streamed response: response.created ... response.completed, each with its
 * sequence number and what it carries (the response, an output item, a text delta...). */
export const ResponseStreamEvent = Type.Object(
  {
    type: Type.String({ description: "response.created, response.output_text.delta, response.completed, ..." }),
    sequence_number: Type.Integer(),
  },
  { $id: "ResponseStreamEvent", title: "ResponseStreamEvent", additionalProperties: true },
);

export const ResponseObject = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal("response"),
    created_at: Type.Integer(),
    status: Type.Union(["in_progress", "completed", "incomplete"].map((s) => Type.Literal(s))),
    model: Type.String(),
    output: Type.Array(
      Type.Union([
        Type.Object({
          type: Type.Literal("reasoning"),
          id: Type.String(),
          summary: Type.Array(Type.Unknown()),
          content: Type.Array(ReasoningText, {
            description: "The trace, or the decoded thoughts (models with a thought decoder).",
          }),
          encrypted_content: Nullable(Type.String()),
          status: Type.String(),
          thoughts: Type.Optional(Type.Ref("ThoughtsSummary")),
        }),
        Type.Object({
          type: Type.Literal("message"),
          id: Type.String(),
          role: Type.Literal("assistant"),
          status: Type.String(),
          content: Type.Array(OutputText),
        }),
      ]),
    ),
    usage: Nullable(
      Type.Object({
        input_tokens: Type.Integer(),
        input_tokens_details: Type.Object({ cached_tokens: Type.Integer() }),
        output_tokens: Type.Integer({ description: "Text tokens and thoughts." }),
        output_tokens_details: Type.Object({ reasoning_tokens: Type.Integer() }),
        total_tokens: Type.Integer(),
      }),
    ),
    incomplete_details: Nullable(Type.Object({ reason: Type.String() })),
    error: Type.Null(),
    instructions: Nullable(Type.String()),
    max_output_tokens: Nullable(Type.Integer()),
    temperature: Nullable(Type.Number()),
    top_p: Nullable(Type.Number()),
    reasoning: Type.Object({ effort: Nullable(Type.String()), summary: Nullable(Type.String()) }),
    weights_version: Type.String(),
  },
  {
    $id: "ResponseObject",
    title: "ResponseObject",
    additionalProperties: true,
    description: "The response; with stream: true, the events response.created ... response.completed carry it.",
  },
);
