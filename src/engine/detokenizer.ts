/** What the engine needs from a tokenizer. */
export interface Detokenizer {
  decode(ids: number[]): string;
}

/** Incremental detokenization over a sliding window, as vLLM and TGI do it: each new token costs
 * two decodes of a few tokens instead of one of the whole output. Text ending in U+FFFD (an
 * incomplete multi-byte character) is held back until the next token completes it. */
export class IncrementalDetokenizer {
  private readonly ids: number[] = [];
  private prefixOffset = 0;
  private readOffset = 0;
  text = "";

  constructor(private readonly tok: Detokenizer) {}

  /** Appends one token; returns the text it adds. */
  push(id: number): string {
    this.ids.push(id);
    const prefix = this.tok.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const full = this.tok.decode(this.ids.slice(this.prefixOffset));
    if (full.length <= prefix.length || full.endsWith("\uFFFD") || !full.startsWith(prefix)) return "";
    const delta = full.slice(prefix.length);
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    this.text += delta;
    return delta;
  }
}
