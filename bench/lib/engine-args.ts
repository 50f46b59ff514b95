import { parseArgs } from "node:util";
import { DEFAULT_MODEL_DIR } from "../../src/config.ts";
import { loadManifest } from "../../src/model/manifest.ts";

/** The flags the engine-level benchmarks share (--model, --batches, --prompt, --steps, and
 * --threads / --rounds where a bench has them), each bench with its own defaults, parsed into
 * numbers, with the model's manifest loaded. */

type Flag = "batches" | "prompt" | "steps" | "threads" | "rounds";
export type EngineBenchDefaults = Record<"batches" | "prompt" | "steps", string> &
  Partial<Record<"threads" | "rounds", string>>;

export function engineBenchArgs(defaults: EngineBenchDefaults) {
  const options: Record<string, { type: "string"; default: string }> = {
    model: { type: "string", default: DEFAULT_MODEL_DIR },
  };
  for (const [flag, value] of Object.entries(defaults)) options[flag] = { type: "string", default: value };
  const values = parseArgs({ options }).values as Record<"model" | Flag, string>;
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
