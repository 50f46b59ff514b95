/** The exact set of strings the server takes as one thought in base64: canonical standard base64
 * (padding included, unused bits zero) of `dim` little-endian float32 values, every one finite.
 * As a regular expression, so that the OpenAPI document can state the rule the server enforces.
 *
 * A float32 is NaN or infinite when its 8 exponent bits are all ones: the top bit of its third
 * byte and the low 7 bits of its fourth. Base64 packs 3 bytes into 4 characters of 6 bits, so a
 * float's exponent lies in two or three characters; the expression lists, per float, the
 * combinations of those characters whose exponent bits are not all ones. */

/** Largest finite float32: the server refuses numbers beyond it (they would round to Infinity). */
export const FLOAT32_MAX = 3.4028234663852886e38;

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** A character class of the alphabet's characters whose 6-bit value passes `keep`. */
function charClass(keep: (v: number) => boolean): string {
  const chars = [...ALPHABET].filter((_, v) => keep(v));
  if (chars.length === 64) return "[A-Za-z0-9+/]";
  return `[${chars.map((c) => (c === "+" || c === "/" ? `\\${c}` : c)).join("")}]`;
}

/** Bits of the stream, most significant bit of byte 0 first: bit b is in character b / 6. */
interface BitRule {
  /** Character index -> mask of its 6-bit value (bit 5 = its first bit) that the exponent uses. */
  masks: Map<number, number>;
}

function exponentBits(float: number): BitRule {
  const masks = new Map<number, number>();
  const byte2 = float * 4 + 2;
  const byte3 = float * 4 + 3;
  const bits = [byte2 * 8, ...Array.from({ length: 7 }, (_, i) => byte3 * 8 + 1 + i)];
  for (const b of bits) {
    const ch = Math.floor(b / 6);
    masks.set(ch, (masks.get(ch) ?? 0) | (1 << (5 - (b % 6))));
  }
  return { masks };
}

/** Characters from..to with the rule "not every masked bit is one": the first character whose
 * masked bits are not all ones (earlier masked ones all ones) decides. */
function notAllOnes(rule: BitRule, from: number, to: number, charAt: (i: number) => string): string {
  const masked = [...rule.masks.keys()].sort((a, b) => a - b);
  const alternatives: string[] = [];
  for (let k = 0; k < masked.length; k++) {
    let alt = "";
    for (let i = from; i <= to; i++) {
      const m = rule.masks.get(i);
      const idx = masked.indexOf(i);
      if (m === undefined || idx > k) alt += charAt(i);
      else if (idx < k) alt += charClass((v) => (v & m) === m && charAllowed(i, v));
      else alt += charClass((v) => (v & m) !== m && charAllowed(i, v));
    }
    alternatives.push(alt);
  }
  return alternatives.length === 1 ? alternatives[0]! : `(?:${alternatives.join("|")})`;
  function charAllowed(i: number, v: number): boolean {
    return charAt(i) === "[A-Za-z0-9+/]" || new RegExp(`^${charAt(i)}$`).test(ALPHABET[v]!);
  }
}

export function finiteFloat32Base64Pattern(dim: number): string {
  const bytes = dim * 4;
  const full = Math.floor(bytes / 3);
  const rem = bytes % 3;
  const dataChars = full * 4 + (rem === 0 ? 0 : rem + 1);
  // Canonical padding: the last data character's unused low bits are zero.
  const unused = rem === 1 ? 4 : rem === 2 ? 2 : 0;
  const charAt = (i: number) =>
    i === dataChars - 1 && unused > 0 ? charClass((v) => (v & ((1 << unused) - 1)) === 0) : "[A-Za-z0-9+/]";
  const rules = Array.from({ length: dim }, (_, f) => exponentBits(f));
  let out = "^";
  let i = 0;
  for (const rule of rules) {
    const chars = [...rule.masks.keys()];
    const lo = Math.min(...chars);
    const hi = Math.max(...chars);
    for (; i < lo; i++) out += charAt(i);
    out += notAllOnes(rule, lo, hi, charAt);
    i = hi + 1;
  }
  for (; i < dataChars; i++) out += charAt(i);
  out += `${"=".repeat(rem === 0 ? 0 : 3 - rem)}$`;
  // Runs of free characters as counted repeats keep the expression short.
  return out.replace(/(?:\[A-Za-z0-9\+\/\]){2,}/g, (run) => `[A-Za-z0-9+/]{${run.length / "[A-Za-z0-9+/]".length}}`);
}
