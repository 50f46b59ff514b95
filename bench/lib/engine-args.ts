import { parseArgs } from "node:util";
import { DEFAULT_MODEL_DIR } from "../../src/config.ts";
import { loadManifest } from "../../src/model/manifest.ts";

/** The flags the engine-level benchmarks share (--model, --batches, --prompt, --steps, and
 * --threads / --rounds where a bench has them), each bench with its own defaults, parsed into
 * numbers, with the model's manifest loaded. */

type Flag = "batches" | "prompt" | "steps" | "threads" | "rounds";
export type EngineBenchDefaults = Record<"batches" | "prompt" | "steps", string> &
  Partial<Record<"threads" | "rounds", string>>;

/** `spinning`: the bench takes --spinning (onnxruntime's threads spin between kernels, as the
 * server's --thread-spinning); a bench that compares both settings itself leaves it out. */
export function engineBenchArgs(defaults: EngineBenchDefaults, flags: { spinning?: boolean } = {}) {
  const options: Record<string, { type: "string"; default: string } | { type: "boolean"; default: boolean }> = {
    model: { type: "string", default: DEFAULT_MODEL_DIR },
    ...(flags.spinning ? { spinning: { type: "boolean", default: false } } : {}),
  };
  for (const [flag, value] of Object.entries(defaults)) options[flag] = { type: "string", default: value };
  const parsed = parseArgs({ options }).values;
  const values = parsed as Record<"model" | Flag, string>;
  const modelDir = values.model;
  const manifest = loadManifest(modelDir);
  const batches = values.batches.split(",").map(Number);
  return {
    modelDir,
    manifest,
    vocabSize: manifest.architecture.vocab_size,
    batches,
    maxBatch: Math.max(...batches),
    prompt: Number(values.prompt),
    steps: Number(values.steps),
    /** NaN where the bench has no such flag. */
    threads: Number(values.threads),
    rounds: Number(values.rounds),
    threadSpinning: parsed.spinning === true,
  };
}

/** KV blocks for `sequences` of `positions` each, block-aligned, plus a few spare. */
export function kvBlocksFor(
  sequences: number,
  positions: number,
  blockSize: number,
): { perSequence: number; total: number } {
  const perSequence = Math.ceil(positions / blockSize);
  return { perSequence, total: sequences * perSequence + 8 };
}
