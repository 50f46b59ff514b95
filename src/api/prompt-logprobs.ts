import type { FastifyInstance, FastifyReply } from "fastify";
import { IncrementalDetokenizer } from "../engine/detokenizer.ts";
import type { ScoredToken } from "../engine/types.ts";
import type { ModelTokenizer } from "../model/tokenizer.ts";
import { requestId } from "./generation.ts";
import { tokenName } from "./logprobs.ts";

/** The prompt's own token log-probs, by the engine's teacher-forced scoring path (tokens 1..
 * after token 0), with each token's rank and the most likely tokens at its position: for
 * vLLM's `prompt_logprobs` and for `/v1/completions` echo with logprobs. */

/** Per prompt position 1.. (position 0 has nothing before it): the scored token, with its rank
 * and the `top` most likely tokens. */
export async function scorePromptTokens(
  app: FastifyInstance,
  reply: FastifyReply,
  ids: number[],
  top: number,
): Promise<ScoredToken[]> {
  return (await scorePromptsTokens(app, reply, [ids], top))[0]!;
}

/** The same for several prompts at once (one scoring sequence each). */
export async function scorePromptsTokens(
  app: FastifyInstance,
  reply: FastifyReply,
  prompts: number[][],
  top: number,
): Promise<ScoredToken[][]> {
  const id = requestId("prompt-logprobs");
  const scored = prompts.map((ids, i) => ({ ids, i })).filter((p) => p.ids.length > 1);
  const results = await app.generation.score(
    reply,
    scored.map(({ ids, i }) => ({
      kind: "score",
      id: `${id}-${i}`,
      promptIds: ids.slice(0, 1),
      thoughts: [],
      answerIds: ids.slice(1),
      topLogprobs: top,
    })),
  );
  const out: ScoredToken[][] = prompts.map(() => []);
  scored.forEach(({ i }, j) => (out[i] = results[j]!.answerLogprobs));
  return out;
}

export interface PromptTokenLogprob {
  logprob: number;
  rank: number | null;
  decoded_token: string;
}

/** vLLM's shape: null for the first position, then {token id: {logprob, rank, decoded_token}}
 * holding the prompt's token and the k most likely tokens (k + 1 entries, or k when the prompt's
 * token is among them). */
export function promptLogprobs(
  ids: number[],
  scored: ScoredToken[],
  k: number,
  tok: ModelTokenizer,
  asIds = false,
): (Record<string, PromptTokenLogprob> | null)[] {
  const name = (id: number) => tokenName(tok, id, asIds);
  return ids.map((tokenId, i) => {
    if (i === 0) return null;
    const s = scored[i - 1]!;
    const out: Record<string, PromptTokenLogprob> = {};
    (s.top ?? [])
      .slice(0, k)
      .forEach((t, r) => (out[t.tokenId] = { logprob: t.logprob, rank: r + 1, decoded_token: name(t.tokenId) }));
    out[tokenId] = { logprob: s.logprob, rank: s.rank ?? null, decoded_token: name(tokenId) };
    return out;
  });
}

/** What `echo` returns for a prompt, and each prompt token's part of it (concatenated: the text).
 * The pieces are the detokenizer's, as for generated tokens. A text prompt is echoed as sent:
 * its characters are matched to the pieces, whitespace the tokenizer dropped (a word-level
 * pre-tokenizer) going to the token after it, whitespace the decoder added (between words) to
 * nothing. When the tokenizer changed the text beyond whitespace (a normalizer, unknown words),
 * the prompt as the model read it (its decoded ids) is echoed instead. */
export function echoPrompt(
  sent: string | null,
  ids: number[],
  tok: ModelTokenizer,
): { text: string; pieces: string[] } {
  const detok = new IncrementalDetokenizer({ decode: (x) => tok.decode(x, false) });
  const decoded = ids.map((id) => detok.push(id));
  // Text held back at the end (an incomplete character) belongs to the last token.
  const whole = tok.decode(ids, false);
  if (decoded.length > 0) decoded[decoded.length - 1] += whole.slice(decoded.join("").length);
  if (sent === null || sent === whole) return { text: whole, pieces: decoded };
  const aligned = alignPieces(sent, decoded);
  return aligned ? { text: sent, pieces: aligned } : { text: whole, pieces: decoded };
}

const isSpace = (c: string | undefined) => c !== undefined && /\s/.test(c);

/** The pieces' spans in `text`, matching characters and skipping whitespace on either side; null
 * when a non-whitespace character differs. */
function alignPieces(text: string, pieces: string[]): string[] | null {
  const out: string[] = [];
  let i = 0;
  for (const piece of pieces) {
    const start = i;
    for (const c of piece) {
      if (text.startsWith(c, i)) {
        i += c.length;
        continue;
      }
      if (isSpace(c)) continue; // added by the decoder
      while (isSpace(text[i]) && !text.startsWith(c, i)) i++; // dropped by the tokenizer
      if (!text.startsWith(c, i)) return null;
      i += c.length;
    }
    out.push(text.slice(start, i));
  }
  if (!/^\s*$/.test(text.slice(i))) return null;
  if (out.length > 0) out[out.length - 1] += text.slice(i);
  return out;
}
