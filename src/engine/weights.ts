import { readFileSync } from "node:fs";
import { join } from "node:path";
import { loadManifest, type Manifest } from "../model/manifest.ts";
import { ModelLoadError, Runner, type RunnerOptions } from "./runner.ts";

/** Weight updates: a new model directory for the served model, loaded beside the serving one and
 * swapped in by the engine between two steps. Only the weights may change: the architecture, the
 * latent settings, the special tokens, the tokenizer and the set of graphs must be the served
 * model's, because the HTTP thread keeps using its tokenizer and manifest. */

/** Header-safe, shown in responses and as a metric label. */
export const WEIGHTS_VERSION_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Why `next` cannot replace `current` (null: it can). */
export function incompatibility(current: Manifest, currentDir: string, next: Manifest, nextDir: string): string | null {
  for (const key of ["architecture", "latent", "special_tokens", "reasoning_modes"] as const) {
    if (!same(current[key], next[key])) {
      return `its ${key} differs from the served model's (${JSON.stringify(next[key])} vs ${JSON.stringify(current[key])})`;
    }
  }
  const graphs = (m: Manifest) => Object.keys(m.graphs).sort();
  if (!same(graphs(current), graphs(next))) {
    return `it ships graphs ${graphs(next).join(", ")}; the served model ships ${graphs(current).join(", ")}`;
  }
  for (const f of ["tokenizer", "tokenizer_config", "chat_template"] as const) {
    if (!readFileSync(join(currentDir, current[f])).equals(readFileSync(join(nextDir, next[f])))) {
      return `its ${next[f]} differs from the served model's`;
    }
  }
  return null;
}

/** Loads `dir` as a runner sharing `serving`'s KV pool; throws ModelLoadError with the reason. */
export async function loadReplacement(serving: Runner, servingDir: string, dir: string): Promise<Runner> {
  let next: Manifest;
  try {
    next = loadManifest(dir);
  } catch (e) {
    throw new ModelLoadError((e as Error).message);
  }
  const why = incompatibility(serving.manifest, servingDir, next, dir);
  if (why) throw new ModelLoadError(`${dir} cannot replace the served model: ${why}`);
  const options: RunnerOptions = { ...serving.options, modelDir: dir };
  return Runner.create(next, options, serving.pool);
}
