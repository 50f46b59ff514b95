import type { ModelInfo } from "./model-info.ts";
import type { RenderOptions, TemplateMessage } from "./chat-template.ts";
import type { ModelTokenizer } from "./tokenizer.ts";

/** A prompt as the engine takes it: its token ids and whether it opens a latent span (its last
 * token is <bot>, so the next K inputs are thoughts). Decided once, here, from the reasoning mode
 * or the ids: the budget and the engine read the fact rather than work it out again. */
export interface Prompt {
  ids: number[];
  opensLatentSpan: boolean;
}

/** Messages through the chat template in `mode`. A latent prompt that asks for the assistant's
 * turn ends in <bot>: NF-CoT templates write it; one that does not gets it appended, so the mode
 * always means K thoughts. */
export function chatPrompt(
  tokenizer: ModelTokenizer,
  info: Pick<ModelInfo, "special">,
  messages: readonly TemplateMessage[],
  opts: RenderOptions,
): Prompt {
  const ids = tokenizer.encodeChat(messages, opts);
  const bot = info.special.bot;
  const answers = opts.addGenerationPrompt ?? true;
  if (opts.mode !== "latent" || bot === undefined || !answers) return { ids, opensLatentSpan: false };
  return { ids: ids.at(-1) === bot ? ids : [...ids, bot], opensLatentSpan: true };
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
