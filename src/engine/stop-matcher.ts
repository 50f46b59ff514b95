/** Stop strings over incrementally decoded text: releases only text that cannot begin a stop
 * string, and cuts the output where one matches (the stop string itself is not returned).
 * While inactive (vLLM's min_tokens not yet reached) everything is released and nothing
 * matches; afterwards only a stop string that ends in text added since then counts, as vLLM
 * checks only the new text. */
export class StopMatcher {
  private emitted = 0;
  private matched = false;
  /** Text length when matching became active: a match must end past it. */
  private floor = 0;

  constructor(private readonly stops: readonly string[]) {}

  /** `text` is the whole decoded output so far; returns the new text safe to release. */
  push(text: string, active = true): { delta: string; stopped: boolean } {
    if (!active) {
      const delta = text.slice(this.emitted);
      this.emitted = this.floor = text.length;
      return { delta, stopped: false };
    }
    let cut = -1;
    for (const s of this.stops) {
      const i = text.indexOf(s, Math.max(0, this.floor - s.length + 1));
      if (s.length > 0 && i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      const delta = text.slice(this.emitted, Math.max(cut, this.emitted));
      this.emitted = Math.max(cut, this.emitted);
      this.matched = true;
      return { delta, stopped: true };
    }
    let safe = text.length;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, text.length); k > 0; k--) {
        if (text.endsWith(s.slice(0, k))) {
          safe = Math.min(safe, text.length - k);
          break;
        }
      }
    }
    const delta = safe > this.emitted ? text.slice(this.emitted, safe) : "";
    this.emitted = Math.max(this.emitted, safe);
    return { delta, stopped: false };
  }

  /** Text held back at the end (a partial stop string that never completed). */
  flush(text: string): string {
    if (this.matched) return "";
    const rest = text.slice(this.emitted);
    this.emitted = text.length;
    return rest;
  }
}
