/** The served document states what this server refuses (unsupported-params.ts) where JSON Schema
 * can: a refused parameter may only be null, and rules across fields are if/then. The request
 * schemas stay permissive so that the route answers 400 `unsupported_parameter` naming the
 * parameter. What no schema can state (min_tokens above the max_tokens budget, a logit_bias id
 * outside the vocabulary) is said in prose. */

type Json = Record<string, any>;

export interface RefusalFacts {
  /** The chat template reads `tools`. */
  readsTools: boolean;
  latentAvailable: boolean;
}

const refusedBy = (why: string): Json => ({ type: "null", description: `Refused unless null: ${why}` });

/** `if` field is given (not null) `then` stream must be / must not be true. */
function streamRule(field: string, stream: boolean, description: string): Json {
  return {
    if: { required: [field], properties: { [field]: { not: { type: "null" } } } },
    then: stream
      ? { required: ["stream"], properties: { stream: { const: true } }, description }
      : { properties: { stream: { not: { const: true } } }, description },
  };
}

export function describeRefusals(schemas: Record<string, Json>, f: RefusalFacts): void {
  const chat = schemas["ChatCompletionRequest"]!;
  const completion = schemas["CompletionRequest"]!;
  const p = chat["properties"];
  for (const legacy of ["functions", "function_call"]) p[legacy] = refusedBy("OpenAI replaced it with tools.");
  if (!f.readsTools) {
    for (const t of ["tools", "tool_choice", "parallel_tool_calls"])
      p[t] = refusedBy("this model's chat template does not read tools.");
  } else {
    p["tool_choice"] = {
      enum: ["none", "auto", null],
      description: '"required" and a named function are refused: no constrained decoding.',
    };
  }
  p["response_format"] = {
    anyOf: [{ type: "object", required: ["type"], properties: { type: { const: "text" } } }, { type: "null" }],
    description: 'Only {"type": "text"}: json_object and json_schema are refused (no structured-output decoding).',
  };
  for (const s of [chat, completion]) {
    s["allOf"] = [
      ...(s["allOf"] ?? []),
      streamRule("stream_options", true, "stream_options needs stream: true."),
      streamRule("prompt_logprobs", false, "prompt_logprobs are not available with stream: true."),
    ];
    const min = s["properties"]["min_tokens"];
    min["description"] =
      `${min["description"]} Above max_tokens (or, without it, above what fits in the context) it is a 400 invalid_request.`;
  }
  const responses = schemas["ResponseRequest"]?.["properties"];
  if (responses) {
    responses["tools"] = refusedBy("no tool calls on /v1/responses.");
    responses["tool_choice"] = refusedBy("no tool calls on /v1/responses.");
    responses["previous_response_id"] = refusedBy(
      "responses are not stored: send the earlier output items back in input.",
    );
    responses["background"] = {
      anyOf: [{ const: false }, { type: "null" }],
      description: "Refused when true: responses are not stored.",
    };
    responses["text"] = {
      anyOf: [
        {
          type: "object",
          properties: {
            format: {
              anyOf: [
                { type: "object", required: ["type"], properties: { type: { const: "text" } } },
                { type: "null" },
              ],
            },
          },
        },
        { type: "null" },
      ],
      description: "Only the text format: json_object and json_schema are refused (no structured-output decoding).",
    };
  }
  const reasoning = completion["properties"]["reasoning"];
  const options = (reasoning["anyOf"] as Json[]).find((b) => b["type"] === "object")!;
  if (!f.latentAvailable) {
    completion["properties"]["reasoning"] = refusedBy("this model has no latent reasoning.");
  } else {
    options["properties"]["mode"] = refusedBy(
      "the prompt sets the mode on /v1/completions (end it with <bot> to open a latent span).",
    );
  }
}
