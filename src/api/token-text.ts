import type { TopLogprob } from "../engine/types.ts";

/** The text each logprob token contributed to a choice's returned content, so that the tokens'
 * strings concatenate to exactly the content and their bytes to exactly its UTF-8, for every
 * tokenizer:
 * - a token's text is its piece as the detokenizer emitted it (spaces a word-level decoder puts
 *   between words included; "" for part of a multi-byte character, whose completing token
 *   carries the character), cut where a stop string cut the content;
 * - a token is released once the content covers its piece (text held back as a possible stop
 *   string is not attributed before it is known to be content), all of them at the end;
 * - bytes: tokens with empty text are grouped with the next token that has text; the group's
 *   own token bytes are used when they concatenate to its text's UTF-8 (byte-level BPE,
 *   partial characters split as the model emitted them), else each token's text's UTF-8
 *   (special tokens the decoder skips: none; word-level spacing: the space's byte). */

export interface LogprobToken {
  tokenId: number;
  /** The text this token contributed to the content. */
  text: string;
  bytes: number[];
  logprob: number;
  top: TopLogprob[];
}

/** A sampled token as the engine reports it with logprobs. */
export interface SampledToken {
  tokenId: number;
  /** Released content this event added (may include earlier tokens' held-back text). */
  text: string;
  /** The token's own detokenized text; absent: taken to be `text`. */
  piece?: string | undefined;
  logprob: number;
  top: TopLogprob[];
}

export interface TokenBytes {
  tokenBytes(id: number): number[];
}

interface Pending {
  token: SampledToken;
  start: number;
  piece: string;
}

const utf8 = new TextEncoder();

export class TokenTextAttribution {
  private full = 0;
  private content = 0;
  private readonly pending: Pending[] = [];
  private group: { token: SampledToken; text: string }[] = [];

  constructor(private readonly tok: TokenBytes) {}

  /** One sampled token; returns the tokens whose text is now known. */
  token(t: SampledToken): LogprobToken[] {
    const piece = t.piece ?? t.text;
    this.pending.push({ token: t, start: this.full, piece });
    this.full += piece.length;
    this.content += t.text.length;
    return this.release(false);
  }

  /** The choice ended; `tail` is the text released at the end. Returns every token left. */
  finish(tail: string): LogprobToken[] {
    this.content += tail.length;
    return this.release(true);
  }

  private release(final: boolean): LogprobToken[] {
    const out: LogprobToken[] = [];
    while (
      this.pending.length > 0 &&
      (final || this.pending[0]!.start + this.pending[0]!.piece.length <= this.content)
    ) {
      const p = this.pending.shift()!;
      const text = p.piece.slice(0, Math.max(0, Math.min(p.piece.length, this.content - p.start)));
      this.group.push({ token: p.token, text });
      if (text !== "") out.push(...this.closeGroup());
    }
    if (final && this.group.length > 0) out.push(...this.closeGroup());
    return out;
  }

  private closeGroup(): LogprobToken[] {
    const group = this.group;
    this.group = [];
    const own = group.map((g) => this.tok.tokenBytes(g.token.tokenId));
    const target = utf8.encode(group.map((g) => g.text).join(""));
    const joined = own.flat();
    const ownFits = joined.length === target.length && joined.every((b, i) => b === target[i]);
    return group.map((g, i) => ({
      tokenId: g.token.tokenId,
      text: g.text,
      bytes: ownFits ? own[i]! : [...utf8.encode(g.text)],
      logprob: g.token.logprob,
      top: g.token.top,
    }));
  }
}

/** The whole choice at once (non-streamed): the tokens in order and the final content. */
export function attributeTokens(tokens: SampledToken[], content: string, tok: TokenBytes): LogprobToken[] {
  const a = new TokenTextAttribution(tok);
  const out: LogprobToken[] = [];
  let released = 0;
  for (const t of tokens) {
    out.push(...a.token(t));
    released += t.text.length;
  }
  out.push(...a.finish(content.slice(released)));
  return out;
}
