import type { ModelInfo } from "./model-info.ts";
import type { RenderOptions, TemplateMessage } from "./chat-template.ts";
import { latentTurnIndexes, renderLatentTurns } from "./latent-turns.ts";
import type { ModelTokenizer } from "./tokenizer.ts";

/** A prompt as the engine takes it: its token ids and whether it opens a latent span (its last
 * token is <bot>, so the next K inputs are thoughts). Decided once, here, from the reasoning mode
 * or the ids: the budget and the engine read the fact rather than work it out again. */
export interface Prompt {
  /** Token ids; THOUGHT (src/model/positions.ts) at each thought position. */
  ids: number[];
  opensLatentSpan: boolean;
  /** The vectors of the thought positions in `ids`, in order (earlier latent turns carried
   * back); absent when there are none. */
  thoughts?: Float32Array[];
}

/** Messages through the chat template in `mode`. A latent prompt that asks for the assistant's
 * turn ends in <bot>: NF-CoT templates write it; one that does not gets it appended, so the mode
 * always means K thoughts. Assistant messages carrying `thoughts` (LatentAssistantMessage) are
 * rendered as the engine generated them, thought positions included (latent-turns.ts); a
 * template that cannot do that throws a ChatTemplateError naming the message. */
export function chatPrompt(
  tokenizer: ModelTokenizer,
  info: Pick<ModelInfo, "special">,
  messages: readonly TemplateMessage[],
  opts: RenderOptions,
): Prompt {
  const turns = latentTurnIndexes(messages);
  const rendered = turns.length > 0 ? renderLatentTurns(tokenizer, info, messages, turns, opts) : null;
  const ids = rendered?.ids ?? tokenizer.encodeChat(messages, opts);
  const carried = rendered ? { thoughts: rendered.thoughts } : {};
  const bot = info.special.bot;
  const answers = opts.addGenerationPrompt ?? true;
  if (opts.mode !== "latent" || bot === undefined || !answers) return { ids, opensLatentSpan: false, ...carried };
  return { ids: ids.at(-1) === bot ? ids : [...ids, bot], opensLatentSpan: true, ...carried };
}

/** Token ids given as they are (a completions prompt): the client's <bot> at the end opens a span. */
export function rawPrompt(ids: number[], info: Pick<ModelInfo, "special">): Prompt {
  return { ids, opensLatentSpan: info.special.bot !== undefined && ids.at(-1) === info.special.bot };
}

/** A prompt that opens a latent span whatever it ends in (latent scoring of a raw prompt). */
export function latentPrompt(ids: number[], info: Pick<ModelInfo, "special">): Prompt {
  const bot = info.special.bot!;
  return { ids: ids.at(-1) === bot ? ids : [...ids, bot], opensLatentSpan: true };
}
