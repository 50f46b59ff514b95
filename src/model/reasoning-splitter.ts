import type { ReasoningSplit } from "./manifest.ts";

/** Splits a reply into its reasoning (the trace) and its answer, as the model declares the split
 * (manifest `reasoning_split`), while it streams. It works on whole pieces (a token's text with
 * what rides along, e.g. its logprob): each piece lands on one side, so the answer's pieces
 * concatenate to exactly the answer and the reasoning's count as reasoning tokens. Pieces are
 * held back while their side is not known yet. */

export type Channel = "reasoning" | "content";

/** Consecutive pieces of one side and their text there (a marker removed). */
export interface Routed<P> {
  channel: Channel;
  pieces: P[];
  text: string;
}

export class ReasoningSplitter<P> {
  private held: P[] = [];
  private answering = false;
  /** Inside the trace (markers): between the start (or the reply's start) and the end marker. */
  private inTrace = false;
  private trimming = true;

  constructor(
    private readonly split: ReasoningSplit,
    private readonly textOf: (p: P) => string,
  ) {}

  /** What is now known to be reasoning or answer, in order. */
  push(piece: P): Routed<P>[] {
    if (this.answering) {
      const text = this.textOf(piece);
      // Whitespace between the end marker and the answer belongs to the marker's side.
      if (this.trimming && /^\s*$/.test(text)) return [{ channel: "reasoning", pieces: [piece], text: "" }];
      this.trimming = false;
      return [{ channel: "content", pieces: [piece], text }];
    }
    this.held.push(piece);
    return "answer" in this.split ? this.lastLine() : this.markers(this.split.start, this.split.end);
  }

  /** At the end: what is still held. With last_line it is the answer; with markers, an open trace
   * whose end marker never came was all reasoning, anything else answer. */
  finish(): Routed<P>[] {
    if (this.held.length === 0) return [];
    const channel: Channel = this.inTrace ? "reasoning" : "content";
    const text = this.heldText();
    return [{ channel, pieces: this.take(), text: channel === "reasoning" ? this.withoutStart(text) : text }];
  }

  /** Every piece up to one that holds a newline is reasoning: the answer is on the last line. */
  private lastLine(): Routed<P>[] {
    if (!this.textOf(this.held.at(-1)!).includes("\n")) return [];
    const text = this.heldText();
    return [{ channel: "reasoning", pieces: this.take(), text }];
  }

  /** A reply that opens with the start marker (or any reply, when the model declares none: its
   * template opens the trace in the prompt) is reasoning until the end marker, then the answer,
   * its leading whitespace trimmed; a reply that does not open with it is all answer (thinking
   * off, as vLLM's Qwen3 parser reads it). Held while the text could still begin a marker. */
  private markers(start: string | undefined, end: string): Routed<P>[] {
    const text = this.heldText();
    if (!this.inTrace) {
      if (start?.startsWith(text)) return [];
      if (start !== undefined && !text.startsWith(start)) {
        this.answering = true;
        this.trimming = false;
        return [{ channel: "content", pieces: this.take(), text }];
      }
      this.inTrace = true;
    }
    const at = text.indexOf(end);
    if (at < 0) {
      if (endsWithPrefixOf(text, end)) return [];
      return [{ channel: "reasoning", pieces: this.take(), text: this.withoutStart(text) }];
    }
    this.answering = true;
    this.inTrace = false;
    const out: Routed<P>[] = [
      { channel: "reasoning", pieces: this.take(), text: this.withoutStart(text.slice(0, at)) },
    ];
    const rest = text.slice(at + end.length).replace(/^\s+/, "");
    if (rest) {
      this.trimming = false;
      out.push({ channel: "content", pieces: [], text: rest });
    }
    return out;
  }

  private started = false;

  /** The start marker is dropped once, at the very beginning of the reply. */
  private withoutStart(text: string): string {
    if (this.started || !("start" in this.split) || this.split.start === undefined) return text;
    this.started = true;
    return text.startsWith(this.split.start) ? text.slice(this.split.start.length).replace(/^\s+/, "") : text;
  }

  private heldText(): string {
    return this.held.map(this.textOf).join("");
  }

  private take(): P[] {
    const out = this.held;
    this.held = [];
    return out;
  }
}

/** The text ends with a proper prefix of the marker (more pieces may complete it). */
function endsWithPrefixOf(text: string, marker: string): boolean {
  for (let n = Math.min(marker.length - 1, text.length); n > 0; n--) if (text.endsWith(marker.slice(0, n))) return true;
  return false;
}
