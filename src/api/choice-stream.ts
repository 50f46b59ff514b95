import type { Generation, TokenOut } from "./generation.ts";
import { SSE_DONE, chunkEncoder, sseData } from "./sse.ts";
import { streamThought } from "./thoughts-summary.ts";
import type { FinishReason } from "../engine/types.ts";
import type { Channel } from "../model/reasoning-splitter.ts";
import type { ThoughtsSummary } from "./thoughts-summary.ts";

/** The one stream loop: a generation's choice events as OpenAI chunks, then usage (when asked)
 * and [DONE]. A route says only how its chunks look (chat deltas or completion text). Thought
 * chunks carry the thought in a field of the choice beside an empty text, which the SDKs pass
 * through untouched. */

export interface ChunkShape {
  /** The fields every chunk's choice starts from (empty delta or text, null finish_reason). */
  blank: Record<string, unknown>;
  /** Chunks a choice opens with (chat: the role; completions with echo: the prompt). */
  opening(choice: number): Record<string, unknown>[];
  /** Answer text, or reasoning text (chat only: completions ask for no split); `tokens`: the
   * answer tokens' logprobs when asked for. */
  text(choice: number, channel: Channel, text: string, tokens: TokenOut[]): Record<string, unknown>;
  /** The choice's last chunk: the finish reason with the thoughts summary. */
  finish(choice: number, reason: FinishReason, thoughts: ThoughtsSummary): Record<string, unknown>;
}

export async function* choiceStream(
  gen: Generation,
  head: Record<string, unknown>,
  shape: ChunkShape,
  opts: { includeUsage: boolean; thoughtVectors: boolean },
): AsyncGenerator<string> {
  const encode = chunkEncoder(head, opts.includeUsage ? { usage: null } : {});
  const chunk = (index: number, fields: Record<string, unknown>) => encode({ index, ...shape.blank, ...fields });
  for (let i = 0; i < gen.choices; i++) for (const fields of shape.opening(i)) yield chunk(i, fields);
  for await (const e of gen.events()) {
    if (e.type === "text") yield chunk(e.choice, shape.text(e.choice, e.channel, e.text, e.tokens));
    else if (e.type === "thought") yield chunk(e.choice, { thought: streamThought(e.thought, opts.thoughtVectors) });
    else yield chunk(e.choice, shape.finish(e.choice, e.reason, e.thoughts));
  }
  if (opts.includeUsage) yield sseData({ ...head, choices: [], usage: gen.usage });
  yield SSE_DONE;
}
