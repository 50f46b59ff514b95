import type { ModelTokenizer } from "../model/tokenizer.ts";
import type { TokenOut } from "./generation.ts";

/** Token log-probs in the two OpenAI shapes: chat (`logprobs.content[]`) and legacy completions
 * (parallel arrays). A token's string is its text (ModelTokenizer.tokenText), its bytes the exact bytes. */

export interface ChatTokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

export function chatLogprobs(tokens: TokenOut[], tok: ModelTokenizer): ChatTokenLogprob[] {
  return tokens.map((t) => ({
    token: tok.tokenText(t.tokenId),
    logprob: t.logprob,
    bytes: tok.tokenBytes(t.tokenId),
    top_logprobs: t.top.map((x) => ({ token: tok.tokenText(x.tokenId), logprob: x.logprob, bytes: tok.tokenBytes(x.tokenId) })),
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

/** Appends tokens to `into`; `offset` is the text length before the first of them. Returns the
 * text length after them. A null logprob marks a token with none (the prompt's first). */
export function appendCompletionLogprobs(
  into: CompletionLogprobs,
  tokens: { tokenId: number; text: string; logprob: number | null; top: TokenOut["top"] | null }[],
  tok: ModelTokenizer,
  offset: number,
): number {
  for (const t of tokens) {
    into.tokens.push(tok.tokenText(t.tokenId));
    into.token_logprobs.push(t.logprob);
    into.top_logprobs.push(t.top && t.top.length ? Object.fromEntries(t.top.map((x) => [tok.tokenText(x.tokenId), x.logprob])) : null);
    into.text_offset.push(offset);
    offset += t.text.length;
  }
  return offset;
}
