import { readFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { Type, type Static } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";

/** The model directory contract (models/README.md): manifest.json describes everything. */

const TensorSpec = Type.Object({
  name: Type.String(),
  dtype: Type.Union([Type.Literal("float32"), Type.Literal("int64"), Type.Literal("float16")]),
  shape: Type.Array(Type.Union([Type.String(), Type.Integer()])),
});
export type TensorSpec = Static<typeof TensorSpec>;

const GraphSpec = Type.Object({
  file: Type.String(),
  inputs: Type.Array(TensorSpec),
  outputs: Type.Array(TensorSpec),
  step_format: Type.Optional(Type.String()),
  stop_token_id: Type.Optional(Type.Integer()),
});
export type GraphSpec = Static<typeof GraphSpec>;

export const ManifestSchema = Type.Object({
  format: Type.Literal("nfcot-onnx"),
  format_version: Type.Literal(1),
  name: Type.String({ minLength: 1 }),
  architecture: Type.Object({
    vocab_size: Type.Integer({ minimum: 1 }),
    hidden_size: Type.Integer({ minimum: 1 }),
    num_layers: Type.Integer({ minimum: 1 }),
    num_heads: Type.Integer({ minimum: 1 }),
    num_kv_heads: Type.Integer({ minimum: 1 }),
    head_dim: Type.Integer({ minimum: 1 }),
    intermediate_size: Type.Integer({ minimum: 1 }),
    max_position: Type.Integer({ minimum: 1 }),
  }),
  max_context: Type.Integer({ minimum: 1 }),
  latent: Type.Object({
    num_thoughts: Type.Integer({ minimum: 1 }),
    thought_dim: Type.Integer({ minimum: 1 }),
    default_temperature: Type.Number({ minimum: 0 }),
    span: Type.Literal("fixed"),
  }),
  special_tokens: Type.Object({
    pad: Type.Integer(), bos: Type.Integer(), eos: Type.Integer(), bot: Type.Integer(), eot: Type.Integer(),
  }),
  reasoning_modes: Type.Array(Type.Union([Type.Literal("none"), Type.Literal("explicit"), Type.Literal("latent")])),
  default_reasoning_mode: Type.Union([Type.Literal("none"), Type.Literal("explicit"), Type.Literal("latent")]),
  kv_cache: Type.Object({ dtype: Type.Literal("float32"), layout: Type.Array(Type.Union([Type.String(), Type.Integer()])) }),
  tokenizer: Type.String(),
  tokenizer_config: Type.String(),
  chat_template: Type.String(),
  graphs: Type.Object({
    backbone: GraphSpec,
    flow_forward: Type.Optional(GraphSpec),
    flow_inverse: Type.Optional(GraphSpec),
    thought_decoder: Type.Optional(GraphSpec),
  }),
  random_weights: Type.Optional(Type.Boolean()),
});
export type Manifest = Static<typeof ManifestSchema>;

export class ManifestError extends Error {}

/** Reads and validates `manifest.json`; every referenced file must exist. Graph inputs and outputs
 * are checked against the real ONNX sessions by the runner. */
export function loadManifest(dir: string): Manifest {
  const path = join(dir, "manifest.json");
  if (!existsSync(path)) throw new ManifestError(`${path}: not found (is ${dir} a model directory?)`);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new ManifestError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  const errors = [...Value.Errors(ManifestSchema, raw)].slice(0, 5);
  if (errors.length) {
    throw new ManifestError(`${path}: ` + errors.map((e) => `${e.path || "/"} ${e.message}`).join("; "));
  }
  const m = raw as Manifest;
  const a = m.architecture;
  if (a.num_heads % a.num_kv_heads !== 0) {
    throw new ManifestError(`${path}: num_heads ${a.num_heads} is not a multiple of num_kv_heads ${a.num_kv_heads}`);
  }
  const files = [m.tokenizer, m.tokenizer_config, m.chat_template, ...Object.values(m.graphs).map((g) => g!.file)];
  for (const f of files) {
    if (!existsSync(join(dir, f))) throw new ManifestError(`${path}: names ${f}, which is missing from ${dir}`);
  }
  return m;
}

/** Replaces symbolic dims the manifest knows with numbers, for comparing against the graph. */
export function resolveDim(m: Manifest, dim: string | number): string | number {
  if (typeof dim === "number") return dim;
  const known: Record<string, number> = {
    vocab_size: m.architecture.vocab_size,
    num_layers: m.architecture.num_layers,
    num_kv_heads: m.architecture.num_kv_heads,
    head_dim: m.architecture.head_dim,
    thought_dim: m.latent.thought_dim,
    num_thoughts: m.latent.num_thoughts,
  };
  return known[dim] ?? dim;
}
