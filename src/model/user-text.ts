/** Special-token strings inside user-supplied text are text, not control tokens. Before the chat
 * template runs, each occurrence in a message string is replaced by a two-character sentinel
 * (U+E000 then U+E001 + index); the template may trim, split or concatenate that text freely.
 * After rendering the sentinels are restored and their ranges returned, so the tokenizer can match
 * special tokens only where the template itself wrote them. U+E000 in user text is escaped the
 * same way, so restoring is exact. */

const SENTINEL = "\uE000";
const FIRST_INDEX = 0xe001;
const LAST_INDEX = 0xf8ff; // end of the BMP private use area

export interface RestoredText {
  text: string;
  /** [start, end) ranges of `text` that came from user text (restored special-token strings). */
  protectedRanges: [number, number][];
}

export class UserTextGuard {
  private readonly strings: string[];
  private readonly find: RegExp;

  constructor(specialTokens: readonly string[]) {
    // Longest first, so a special token that contains another is matched whole.
    this.strings = [
      SENTINEL,
      ...[...new Set(specialTokens)].filter((s) => s.length > 0).sort((a, b) => b.length - a.length),
    ];
    if (FIRST_INDEX + this.strings.length - 1 > LAST_INDEX)
      throw new Error(`too many special tokens (${this.strings.length - 1}) to protect user text`);
    this.find = new RegExp(this.strings.map(escapeRegExp).join("|"), "g");
  }

  /** `s` with every special-token string (and the sentinel) replaced by its sentinel pair. */
  protect(s: string): string {
    return s.replace(this.find, (m) => SENTINEL + String.fromCharCode(FIRST_INDEX + this.strings.indexOf(m)));
  }

  /** Rendered template text with the sentinels turned back into their strings. */
  restore(rendered: string): RestoredText {
    const protectedRanges: [number, number][] = [];
    let text = "";
    let last = 0;
    for (const m of rendered.matchAll(/\uE000([\uE001-\uF8FF])/g)) {
      const original = this.strings[m[1]!.charCodeAt(0) - FIRST_INDEX];
      if (original === undefined) continue; // not one of ours (the template's own private-use text)
      text += rendered.slice(last, m.index);
      protectedRanges.push([text.length, text.length + original.length]);
      text += original;
      last = m.index! + m[0].length;
    }
    text += rendered.slice(last);
    return { text, protectedRanges };
  }
}

export function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
