import { ChatTemplateError, type RenderOptions, type TemplateMessage } from "./chat-template.ts";
import type { ModelInfo } from "./model-info.ts";
import { THOUGHT } from "./positions.ts";
import type { ModelTokenizer } from "./tokenizer.ts";

/** Earlier assistant turns that were generated in latent mode, carried back into a conversation
 * with their thought vectors, so that the next request continues the very sequence the engine
 * ran (and its KV blocks come from the prefix cache) instead of a text rendering of it.
 *
 * Such a turn is rendered as the engine saw it when it generated it: the conversation before it
 * with the generation prompt in latent mode (ending in <bot>), the K thought positions, the
 * answer's ids, then EOS and whatever the template writes after it; the rest of the conversation
 * as the template renders it. Done with any template whose renderings are prefix-stable: each
 * conversation prefix's rendering must extend the previous one, and the generation prompt must
 * extend the conversation before it; otherwise the message is refused (a ChatTemplateError, the
 * client's 400), since no rendering then continues what the engine ran.
 *
 * Assumption: the answer's text re-tokenizes to the ids the model generated (true for the
 * shipped char-level tokenizer; test/latent-turns.test.ts checks it on the real engine). A
 * tokenizer where it is not true still gets a valid prompt, only a shorter cache hit. */

/** An assistant message generated in latent mode: its answer as `content`, its thoughts (the
 * vectors, flow space u, K of them) as `thoughts`. */
export interface LatentAssistantMessage extends TemplateMessage {
  role: "assistant";
  thoughts: Float32Array[];
}

export interface RenderedConversation {
  /** Token ids with THOUGHT at each thought position. */
  ids: number[];
  /** The vectors of those positions, in order. */
  thoughts: Float32Array[];
}

/** Indexes of the messages that carry thoughts; a malformed carrier is refused. */
export function latentTurnIndexes(messages: readonly TemplateMessage[]): number[] {
  const out: number[] = [];
  messages.forEach((m, i) => {
    if (m["thoughts"] === undefined) return;
    const t = m["thoughts"];
    if (m.role !== "assistant")
      throw new ChatTemplateError(`messages[${i}]: only an assistant turn can carry thoughts.`, `messages[${i}]`);
    if (!Array.isArray(t) || !t.every((v) => v instanceof Float32Array)) {
      throw new ChatTemplateError(`messages[${i}].thoughts must be thought vectors.`, `messages[${i}]`);
    }
    out.push(i);
  });
  return out;
}

/** The messages as one prompt, each latent assistant turn (indexes from latentTurnIndexes, at
 * least one) rendered as generated. `opts` renders the last part (the request's own mode and
 * generation prompt); the history is rendered in latent mode, the mode its turns ran in. */
export function renderLatentTurns(
  tokenizer: ModelTokenizer,
  info: Pick<ModelInfo, "special">,
  messages: readonly TemplateMessage[],
  turns: readonly number[],
  opts: RenderOptions,
): RenderedConversation {
  const bot = info.special.bot;
  const eos = info.special.eos;
  const plain = messages.map(withoutThoughts);
  const history = (end: number, addGenerationPrompt: boolean) =>
    tokenizer.encodeChat(plain.slice(0, end), { ...opts, mode: "latent", addGenerationPrompt });
  const ids: number[] = [];
  const thoughts: Float32Array[] = [];
  let prev: number[] = [];
  for (const i of turns) {
    const param = `messages[${i}]`;
    const refuse = (why: string) =>
      new ChatTemplateError(
        `${param} carries thoughts, but ${why}, so the turn cannot be rendered as it was generated.`,
        param,
      );
    if (bot === undefined) throw refuse("this model has no latent spans");
    const before = history(i, false);
    if (!extendsIds(before, prev))
      throw refuse("the chat template renders the conversation before it differently from the earlier turns' prefix");
    const generation = history(i, true);
    if (!extendsIds(generation, before))
      throw refuse("the chat template's generation prompt does not extend the conversation before it");
    const after = history(i + 1, false);
    if (!extendsIds(after, before))
      throw refuse("the chat template's rendering with this turn does not extend the conversation before it");
    // What the template writes after the answer: from its EOS on (e.g. "<eos>\n"); none: EOS alone.
    const turn = after.slice(before.length);
    const eosAt = turn.lastIndexOf(eos);
    const closing = eosAt >= 0 ? turn.slice(eosAt) : [eos];
    const span = generation.slice(before.length);
    if (span.at(-1) !== bot) span.push(bot);
    const vectors = messages[i]!["thoughts"] as Float32Array[];
    ids.push(
      ...before.slice(prev.length),
      ...span,
      ...vectors.map(() => THOUGHT),
      ...tokenizer.encodeText(contentText(messages[i]!)),
      ...closing,
    );
    thoughts.push(...vectors);
    prev = after;
  }
  const last = tokenizer.encodeChat(plain, opts);
  const lastTurn = turns.at(-1)!;
  if (!extendsIds(last, prev)) {
    throw new ChatTemplateError(
      `messages[${lastTurn}] carries thoughts, but the chat template renders the conversation after it differently in this request's mode, so the turn cannot be continued as it was generated.`,
      `messages[${lastTurn}]`,
    );
  }
  ids.push(...last.slice(prev.length));
  return { ids, thoughts };
}

function withoutThoughts(m: TemplateMessage): TemplateMessage {
  if (m["thoughts"] === undefined) return m;
  const { thoughts: _, ...rest } = m;
  return rest as TemplateMessage;
}

/** The answer text as the template would see it (text parts joined as the renderer joins them). */
function contentText(m: TemplateMessage): string {
  const c = m.content;
  return c === null ? "" : typeof c === "string" ? c : c.map((p) => p.text).join("\n");
}

function extendsIds(ids: readonly number[], prefix: readonly number[]): boolean {
  if (prefix.length > ids.length) return false;
  for (let i = 0; i < prefix.length; i++) if (ids[i] !== prefix[i]) return false;
  return true;
}
