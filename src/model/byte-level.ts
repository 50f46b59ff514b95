/** GPT-2's byte-level alphabet (used by byte-level BPE: Qwen, Llama 3): each byte is stored in
 * the vocabulary as one printable character. Maps those characters back to bytes. */
export function byteLevelDecoder(): Map<string, number> {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const map = new Map<string, number>();
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    // Printable bytes stand for themselves; the rest are shifted past 255, in byte order.
    const ch = printable.includes(b) ? b : 256 + extra++;
    map.set(String.fromCodePoint(ch), b);
  }
  return map;
}
