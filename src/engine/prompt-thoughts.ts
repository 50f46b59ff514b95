import { THOUGHT } from "../model/positions.ts";
import type { GenerateRequest } from "./types.ts";

/** Why a generation prompt's thought positions cannot run, or null. One vector per THOUGHT in
 * promptIds, each of the model's thought_dim finite float32s: the API checks the same (the
 * route's parseThoughts), so this is the engine's backstop against a wrong vector reaching the
 * graph (a short one would read past its row; NaN would poison the KV blocks it is cached in). */
export function promptThoughtsProblem(req: GenerateRequest, thoughtDim: number): string | null {
  const given = req.promptThoughts ?? [];
  let slots = 0;
  for (const id of req.promptIds) if (id === THOUGHT) slots++;
  if (slots === 0 && given.length === 0) return null;
  if (thoughtDim === 0) return "this model takes no thought inputs";
  if (slots !== given.length) return `the prompt has ${slots} thought positions but ${given.length} thought vectors`;
  for (const [i, v] of given.entries()) {
    if (!(v instanceof Float32Array) || v.length !== thoughtDim) {
      return `prompt thought ${i} has ${v?.length ?? 0} dimensions; the model's thoughts have ${thoughtDim}`;
    }
    const bad = v.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) return `prompt thought ${i} has a non-finite value (${v[bad]}) at dimension ${bad}`;
  }
  return null;
}
