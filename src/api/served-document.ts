import { FLOAT32_MAX, finiteFloat32Base64Pattern } from "./float32-base64.ts";
import { describeRefusals, type RefusalFacts } from "./served-refusals.ts";

/** The OpenAPI document states the rules of the model and configuration this server serves,
 * which the routes enforce but the request schemas (shared by every model) cannot: the model name
 * (other names: 404 model_not_found), K thoughts of thought_dim finite float32 values, token ids
 * below the vocabulary size, n and list sizes under the server's limits. It also gives every
 * request body an example that works as is (the docs UI's "Try it out"), and documents streams
 * as event streams whose events are the chunk schemas. */

export interface ServedFacts extends RefusalFacts {
  modelName: string;
  numThoughts: number;
  thoughtDim: number;
  vocabSize: number;
  maxN: number;
  maxQueue: number;
}

type Json = Record<string, any>;

const REQUESTS = [
  "ChatCompletionRequest",
  "CompletionRequest",
  "ResponseRequest",
  "LatentLogprobsRequest",
  "LatentDecodeRequest",
  "TokenizeRequest",
  "DetokenizeRequest",
];

function walk(node: unknown, visit: (n: Json) => void): void {
  if (Array.isArray(node)) for (const x of node) walk(x, visit);
  else if (node && typeof node === "object") {
    visit(node as Json);
    for (const v of Object.values(node)) walk(v, visit);
  }
}

function thoughts(f: ServedFacts): Json {
  const k = { minItems: f.numThoughts, maxItems: f.numThoughts };
  return {
    title: "ThoughtsInput",
    description:
      `Exactly ${f.numThoughts} thoughts of ${f.thoughtDim} finite float32 values each: canonical base64 of little-endian ` +
      "float32 (the pattern admits exactly the finite ones), or arrays of numbers within float32's range.",
    anyOf: [
      { type: "array", ...k, items: { type: "string", pattern: finiteFloat32Base64Pattern(f.thoughtDim) } },
      {
        type: "array",
        ...k,
        items: {
          type: "array",
          minItems: f.thoughtDim,
          maxItems: f.thoughtDim,
          items: { type: "number", minimum: -FLOAT32_MAX, maximum: FLOAT32_MAX },
        },
      },
    ],
  };
}

function examples(f: ServedFacts): Record<string, Json> {
  const zeros = Array.from({ length: f.numThoughts }, () => Array.from({ length: f.thoughtDim }, () => 0));
  const user = [{ role: "user", content: "a = 3\nb = a + 4\nprint(b)" }];
  return {
    ChatCompletionRequest: { model: f.modelName, messages: user, max_tokens: 16, seed: 1 },
    CompletionRequest: { model: f.modelName, prompt: "a = 3\nb = a + 4\nprint(b)\n", max_tokens: 8, seed: 1 },
    ResponseRequest: { model: f.modelName, input: "a = 3\nb = a + 4\nprint(b)", max_output_tokens: 16 },
    LatentLogprobsRequest: { model: f.modelName, messages: user, trajectories: [{ thoughts: zeros, answer: "7" }] },
    LatentDecodeRequest: { model: f.modelName, thoughts: zeros },
    TokenizeRequest: { model: f.modelName, messages: user },
    DetokenizeRequest: { model: f.modelName, tokens: [21, 153] },
  };
}

export function describeServed(doc: Json, f: ServedFacts): Json {
  const schemas = doc["components"]["schemas"] as Record<string, Json>;
  const ex = examples(f);
  for (const name of REQUESTS) {
    const s = schemas[name]!;
    s["properties"]["model"] = {
      type: "string",
      enum: [f.modelName],
      description: "The served model (GET /v1/models). Any other name is answered 404 model_not_found.",
    };
    s["examples"] = [ex[name]];
  }
  for (const req of ["ChatCompletionRequest", "CompletionRequest"]) {
    setMaximum(schemas[req]!["properties"]["n"], f.maxN);
  }
  // A list of prompts, or of trajectories, is one engine request each: at most the queue.
  for (const branch of schemas["CompletionRequest"]!["properties"]["prompt"]["anyOf"] as Json[]) {
    if (branch["type"] === "array" && branch["items"]?.["type"] !== "integer") branch["maxItems"] = f.maxQueue;
  }
  describeRefusals(schemas, f);
  const trajectories = schemas["LatentLogprobsRequest"]!["properties"]["trajectories"];
  trajectories["maxItems"] = Math.min(trajectories["maxItems"] ?? Infinity, f.maxQueue);

  walk(schemas, (node) => {
    // The JSON parser refuses "__proto__" anywhere in a body (prototype poisoning): 400. Extra
    // fields are ignored, but they are JSON values without "__proto__" at any depth either.
    if (node["type"] === "object" && node["properties"]) {
      node["propertyNames"] = NO_PROTO_NAME;
      node["additionalProperties"] ??= { $ref: "#/components/schemas/ExtraJsonValue" };
    }
    if (node["title"] === "TokenId") {
      node["maximum"] = f.vocabSize - 1;
      node["description"] = `A token id of the model's vocabulary (${f.vocabSize} tokens).`;
    }
    for (const [key, value] of Object.entries(node)) {
      if (value && typeof value === "object" && (value as Json)["title"] === "ThoughtsInput") node[key] = thoughts(f);
    }
  });
  schemas["ExtraJsonValue"] = {
    title: "ExtraJsonValue",
    description: 'Any JSON value without an object key "__proto__" at any depth (an ignored extra field).',
    anyOf: [
      { type: ["string", "number", "boolean", "null"] },
      { type: "array", items: { $ref: "#/components/schemas/ExtraJsonValue" } },
      {
        type: "object",
        propertyNames: NO_PROTO_NAME,
        additionalProperties: { $ref: "#/components/schemas/ExtraJsonValue" },
      },
    ],
  };
  return doc;
}

const NO_PROTO_NAME = { not: { const: "__proto__" } };

/** `n` is nullable (anyOf [integer, null]): the bound goes on the integer. */
function setMaximum(schema: Json, max: number): void {
  for (const b of (schema["anyOf"] as Json[] | undefined) ?? [schema]) if (b["type"] === "integer") b["maximum"] = max;
}
