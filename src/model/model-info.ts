import {
  eosTokenIds,
  latentUnavailableReason,
  type Manifest,
  type ReasoningMode,
  type ReasoningSplit,
} from "./manifest.ts";

/** What the served model is, from its manifest alone: the one builder of these facts, used by the
 * engine thread (which adds what loading found out, engine-info.ts) and the HTTP thread. A
 * text-only model (no `latent` section) has no thoughts: 0, and the reason why. */
export interface ModelInfo {
  name: string;
  /** The model's context: min(max_context, max_position). The server may serve less (engine-info.ts). */
  maxContext: number;
  numThoughts: number;
  thoughtDim: number;
  defaultLatentTemperature: number;
  /** Why latent reasoning is unavailable (a text-only model), or null. */
  latentUnavailable: string | null;
  reasoningModes: ReasoningMode[];
  defaultReasoningMode: ReasoningMode;
  /** Where an explicit trace ends and the answer begins; null: the model declares no split. */
  reasoningSplit: ReasoningSplit | null;
  hasThoughtDecoder: boolean;
  /** Ships the shallow flow graphs (flow log-dets can be asked for). */
  hasFlow: boolean;
  special: Manifest["special_tokens"];
  /** Every id that ends generation (special.eos included). */
  eosTokenIds: number[];
  vocabSize: number;
}

/** The split that applies to a reply in `mode`: an explicit trace's, and in none mode only a
 * marker split (a model that writes its own think tags); latent replies are answers. */
export function replySplit(info: Pick<ModelInfo, "reasoningSplit">, mode: ReasoningMode): ReasoningSplit | null {
  const split = info.reasoningSplit;
  if (split === null || mode === "latent") return null;
  return mode === "explicit" || !("answer" in split) ? split : null;
}

export function modelInfo(manifest: Manifest): ModelInfo {
  const latent = manifest.latent;
  const graphs = manifest.graphs;
  return {
    name: manifest.name,
    maxContext: Math.min(manifest.max_context, manifest.architecture.max_position),
    numThoughts: latent?.num_thoughts ?? 0,
    thoughtDim: latent?.thought_dim ?? 0,
    defaultLatentTemperature: latent?.default_temperature ?? 0,
    latentUnavailable: latentUnavailableReason(manifest),
    reasoningModes: manifest.reasoning_modes,
    defaultReasoningMode: manifest.default_reasoning_mode,
    reasoningSplit: manifest.reasoning_split ?? null,
    hasThoughtDecoder: graphs.thought_decoder !== undefined,
    hasFlow: graphs.flow_forward !== undefined && graphs.flow_inverse !== undefined,
    special: manifest.special_tokens,
    eosTokenIds: eosTokenIds(manifest),
    vocabSize: manifest.architecture.vocab_size,
  };
}
