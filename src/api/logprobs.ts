import type { TopLogprob } from "../engine/types.ts";
import type { ModelTokenizer } from "../model/tokenizer.ts";
import type { LogprobToken } from "./token-text.ts";

/** Token log-probs in the two OpenAI shapes: chat (`logprobs.content[]`) and legacy completions
 * (parallel arrays). A token's string and bytes are its part of the returned text (token-text.ts:
 * they concatenate to the content); the alternatives' are their own text (ModelTokenizer.tokenText)
 * and exact bytes. With vLLM's return_tokens_as_token_ids every token string is "token_id:<id>"
 * instead: text cannot name a special token (its text is empty) or part of a character, and an RL
 * trainer needs the exact ids it is to score. Bytes and text offsets stay the text's. */

const tokenIdString = (id: number) => `token_id:${id}`;

/** A token named on its own (an alternative, a prompt token): its text, or "token_id:<id>". */
export const tokenName = (tok: ModelTokenizer, id: number, asIds: boolean) =>
  asIds ? tokenIdString(id) : tok.tokenText(id);

export interface ChatTokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

export function chatLogprobs(tokens: LogprobToken[], tok: ModelTokenizer, asIds = false): ChatTokenLogprob[] {
  return tokens.map((t) => ({
    token: asIds ? tokenIdString(t.tokenId) : t.text,
    logprob: t.logprob,
    bytes: t.bytes,
    top_logprobs: t.top.map((x) => ({
      token: tokenName(tok, x.tokenId, asIds),
      logprob: x.logprob,
      bytes: tok.tokenBytes(x.tokenId),
    })),
  }));
}

export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: (number | null)[];
  top_logprobs: (Record<string, number> | null)[];
  text_offset: number[];
}

export function emptyCompletionLogprobs(): CompletionLogprobs {
  return { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
}

/** Appends tokens to `into`; `offset` is the text length before the first of them (character
 * offsets into the returned text: each token's text is its part of it). Returns the text length
 * after them. A null logprob marks a token with none (the prompt's first). */
export function appendCompletionLogprobs(
  into: CompletionLogprobs,
  tokens: { tokenId: number; text: string; logprob: number | null; top: TopLogprob[] | null }[],
  tok: ModelTokenizer,
  offset: number,
  asIds = false,
): number {
  for (const t of tokens) {
    into.tokens.push(asIds ? tokenIdString(t.tokenId) : t.text);
    into.token_logprobs.push(t.logprob);
    into.top_logprobs.push(
      t.top?.length ? Object.fromEntries(t.top.map((x) => [tokenName(tok, x.tokenId, asIds), x.logprob])) : null,
    );
    into.text_offset.push(offset);
    offset += t.text.length;
  }
  return offset;
}
