/** Incremental parser for an OpenAI-style event stream: network chunks in, the `data:` payloads
 * of complete events out. Events may be split anywhere across chunks (inside a UTF-8 character
 * too: the decoder keeps the partial bytes), and several may arrive in one chunk. */

export class SseParser {
  private buf = "";
  private readonly decoder = new TextDecoder();

  /** The payloads of the events this chunk completes, in order ("[DONE]" included as is). */
  push(chunk: Uint8Array | string): string[] {
    this.buf += typeof chunk === "string" ? chunk : this.decoder.decode(chunk, { stream: true });
    const out: string[] = [];
    for (;;) {
      const m = /\r?\n\r?\n/.exec(this.buf);
      if (!m) break;
      const event = this.buf.slice(0, m.index);
      this.buf = this.buf.slice(m.index + m[0].length);
      const data = dataOf(event);
      if (data !== null) out.push(data);
    }
    return out;
  }

  /** At the end of the stream: whatever was left unterminated (a cut stream), if anything. */
  end(): string | null {
    const rest = (this.buf + this.decoder.decode()).trim();
    this.buf = "";
    return rest === "" ? null : rest;
  }
}

/** The data of one event: its `data:` lines joined by newlines (comments and other fields are
 * skipped); null when it has none. */
function dataOf(event: string): string | null {
  const lines: string[] = [];
  for (const line of event.split(/\r?\n/)) {
    if (!line.startsWith("data:")) continue;
    lines.push(line.slice(line.startsWith("data: ") ? 6 : 5));
  }
  return lines.length ? lines.join("\n") : null;
}
