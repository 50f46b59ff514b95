import { readFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { Type, type Static } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";

/** The model directory contract (models/README.md): manifest.json describes everything. */

/** How a model reasons before answering: K latent thoughts, a written trace, or not at all. The one
 * definition of the modes: the manifest declares which a model has, requests pick among them. */
export const ReasoningModeSchema = Type.Union([Type.Literal("latent"), Type.Literal("explicit"), Type.Literal("none")]);
export type ReasoningMode = Static<typeof ReasoningModeSchema>;

export const ReasoningSplitSchema = Type.Union([
  Type.Object({ answer: Type.Literal("last_line") }),
  Type.Object({ start: Type.Optional(Type.String({ minLength: 1 })), end: Type.String({ minLength: 1 }) }),
]);
export type ReasoningSplit = Static<typeof ReasoningSplitSchema>;

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
    family: Type.Optional(Type.String({ minLength: 1 })), // "nfcot-trace" | "llama" | "qwen2" | "qwen3"
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
  /** Absent: a text-only model (no NF-CoT extras in the checkpoint). */
  latent: Type.Optional(
    Type.Object({
      num_thoughts: Type.Integer({ minimum: 1 }),
      thought_dim: Type.Integer({ minimum: 1 }),
      default_temperature: Type.Number({ minimum: 0 }),
      span: Type.Literal("fixed"),
    }),
  ),
  special_tokens: Type.Object({
    eos: Type.Integer({ minimum: 0 }),
    bos: Type.Optional(Type.Integer({ minimum: 0 })), // Qwen has none
    pad: Type.Optional(Type.Integer({ minimum: 0 })),
    unk: Type.Optional(Type.Integer({ minimum: 0 })),
    bot: Type.Optional(Type.Integer({ minimum: 0 })), // required with latent
    eot: Type.Optional(Type.Integer({ minimum: 0 })),
  }),
  /** Every id that ends generation (generation_config.json's list plus the tokenizer's eos). */
  eos_token_ids: Type.Optional(Type.Array(Type.Integer({ minimum: 0 }), { minItems: 1 })),
  reasoning_modes: Type.Array(ReasoningModeSchema),
  default_reasoning_mode: ReasoningModeSchema,
  /** Where an explicit-mode trace ends and the answer begins, by the model's own convention:
   * "last_line" (the answer is the reply's last line: nfcot-trace) or marker strings around the
   * trace (<think> ... </think>: Qwen3, DeepSeek-R1). Absent: no split, all text is the answer. */
  reasoning_split: Type.Optional(ReasoningSplitSchema),
  /** float16: the pool is half the memory; the graph casts what it reads (models/nfcot/kv_dtype.py). */
  kv_cache: Type.Object({
    dtype: Type.Union([Type.Literal("float32"), Type.Literal("float16")]),
    layout: Type.Array(Type.Union([Type.String(), Type.Integer()])),
  }),
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
  weights: Type.Optional(Type.Object({ dtype: Type.String() })),
  source: Type.Optional(
    Type.Object({
      hf_architecture: Type.Optional(Type.String()),
      exporter_commit: Type.Optional(Type.String()),
      flags: Type.Optional(Type.Array(Type.String())),
    }),
  ),
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
    throw new ManifestError(`${path}: ${errors.map((e) => `${e.path || "/"} ${e.message}`).join("; ")}`);
  }
  const m = raw as Manifest;
  const a = m.architecture;
  if (a.num_heads % a.num_kv_heads !== 0) {
    throw new ManifestError(`${path}: num_heads ${a.num_heads} is not a multiple of num_kv_heads ${a.num_kv_heads}`);
  }
  checkLatent(m, path);
  for (const t of [...m.graphs.backbone.inputs, ...m.graphs.backbone.outputs]) {
    if ((t.name === "kv_pool" || t.name === "new_kv") && t.dtype !== m.kv_cache.dtype) {
      throw new ManifestError(
        `${path}: graphs.backbone ${t.name} is ${t.dtype} but kv_cache.dtype is ${m.kv_cache.dtype}`,
      );
    }
  }
  const V = a.vocab_size;
  for (const [k, id] of Object.entries(m.special_tokens)) {
    if (id !== undefined && id >= V)
      throw new ManifestError(`${path}: special_tokens.${k} ${id} is outside the vocabulary (vocab_size ${V})`);
  }
  for (const id of m.eos_token_ids ?? []) {
    if (id >= V)
      throw new ManifestError(`${path}: eos_token_ids holds ${id}, outside the vocabulary (vocab_size ${V})`);
  }
  const files = [m.tokenizer, m.tokenizer_config, m.chat_template, ...Object.values(m.graphs).map((g) => g!.file)];
  for (const f of files) {
    if (!existsSync(join(dir, f))) throw new ManifestError(`${path}: names ${f}, which is missing from ${dir}`);
  }
  return m;
}

const THOUGHT_IO = ["thought_inputs", "is_thought", "mu", "log_sigma"];

/** Whether the backbone graph takes thought inputs and returns the NF head (mu, log_sigma). */
export function hasThoughtIO(spec: GraphSpec): boolean {
  return [...spec.inputs, ...spec.outputs].some((t) => THOUGHT_IO.includes(t.name));
}

/** k of the backbone's top_logits / top_ids outputs (models/nfcot/top_logits.py); 0 when the
 * graph predates them. */
export function topLogitsK(spec: GraphSpec): number {
  const k = spec.outputs.find((t) => t.name === "top_ids")?.shape[1];
  return typeof k === "number" ? k : 0;
}

/** A latent model declares all of it (span tokens, thought tensors); a text-only one none of it. */
function checkLatent(m: Manifest, path: string): void {
  const b = m.graphs.backbone;
  const declared = THOUGHT_IO.filter((n) => [...b.inputs, ...b.outputs].some((t) => t.name === n));
  if (!m.default_reasoning_mode || !m.reasoning_modes.includes(m.default_reasoning_mode)) {
    throw new ManifestError(
      `${path}: default_reasoning_mode '${m.default_reasoning_mode}' is not in reasoning_modes [${m.reasoning_modes.join(", ")}]`,
    );
  }
  if (m.latent) {
    for (const k of ["bot", "eot"] as const) {
      if (m.special_tokens[k] === undefined)
        throw new ManifestError(`${path}: special_tokens.${k} is required when latent is present`);
    }
    if (declared.length !== THOUGHT_IO.length) {
      const missing = THOUGHT_IO.filter((n) => !declared.includes(n));
      throw new ManifestError(`${path}: latent is present but graphs.backbone lacks ${missing.join(", ")}`);
    }
    return;
  }
  if (m.reasoning_modes.includes("latent")) {
    throw new ManifestError(`${path}: reasoning_modes names 'latent' but the manifest has no latent section`);
  }
  if (declared.length > 0) {
    throw new ManifestError(
      `${path}: graphs.backbone declares ${declared.join(", ")} but the manifest has no latent section`,
    );
  }
  for (const g of ["flow_forward", "flow_inverse", "thought_decoder"] as const) {
    if (m.graphs[g]) throw new ManifestError(`${path}: graphs.${g} needs a latent section`);
  }
}

/** Every id that ends generation: the manifest's list and the tokenizer's eos. */
export function eosTokenIds(m: Manifest): number[] {
  return [...new Set([m.special_tokens.eos, ...(m.eos_token_ids ?? [])])];
}

/** Why the model cannot reason in latent mode, or null when it can. */
export function latentUnavailableReason(m: Manifest): string | null {
  if (m.latent) return null;
  return (
    `The model '${m.name}' has no NF-CoT extras (no latent section in its manifest: the checkpoint it was exported ` +
    "from has no nfcot_config.json / nfcot.safetensors), so it serves text only; latent reasoning is unavailable."
  );
}

/** Replaces symbolic dims the manifest knows with numbers, for comparing against the graph. */
export function resolveDim(m: Manifest, dim: string | number): string | number {
  if (typeof dim === "number") return dim;
  const known: Record<string, number> = {
    vocab_size: m.architecture.vocab_size,
    num_layers: m.architecture.num_layers,
    num_kv_heads: m.architecture.num_kv_heads,
    head_dim: m.architecture.head_dim,
    ...(m.latent ? { thought_dim: m.latent.thought_dim, num_thoughts: m.latent.num_thoughts } : {}),
  };
  return known[dim] ?? dim;
}
