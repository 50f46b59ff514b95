import { eosTokenIds, latentUnavailableReason, type Manifest } from "../model/manifest.ts";
import type { ModelInfo } from "./options.ts";

/** The facts the HTTP side needs about the served model, from its manifest plus what loading
 * found out. A text-only model (no `latent` section) has no thoughts: 0 and the reason why. */
export function modelInfoFrom(
  manifest: Manifest,
  loaded: Pick<ModelInfo, "modelDir" | "numBlocks" | "blockSize" | "hasThoughtDecoder" | "provider">,
): ModelInfo {
  const latent = manifest.latent;
  return {
    ...loaded,
    name: manifest.name,
    maxContext: Math.min(manifest.max_context, manifest.architecture.max_position),
    numThoughts: latent?.num_thoughts ?? 0,
    thoughtDim: latent?.thought_dim ?? 0,
    defaultLatentTemperature: latent?.default_temperature ?? 0,
    latentUnavailable: latentUnavailableReason(manifest),
    reasoningModes: manifest.reasoning_modes,
    defaultReasoningMode: manifest.default_reasoning_mode,
    special: manifest.special_tokens,
    eosTokenIds: eosTokenIds(manifest),
    vocabSize: manifest.architecture.vocab_size,
  };
}
