/** Stop strings over incrementally decoded text: releases only text that cannot begin a stop
 * string, and cuts the output where one matches (the stop string itself is not returned). */
export class StopMatcher {
  private emitted = 0;
  private matched = false;

  constructor(private readonly stops: readonly string[]) {}

  /** `text` is the whole decoded output so far; returns the new text safe to release. */
  push(text: string): { delta: string; stopped: boolean } {
    let cut = -1;
    for (const s of this.stops) {
      const i = text.indexOf(s);
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
