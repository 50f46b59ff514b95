/** The task's answer convention (models/nfcot/generate.py parse_answer): the integer on the last
 * non-empty line of the reply; anything else there is no answer. */
export function parseAnswer(text: string): number | null {
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "");
  const last = lines.at(-1);
  if (last === undefined || !/^[+-]?\d+$/.test(last)) return null;
  return Number(last);
}

/** The last non-empty line and whether text lines come before it (the trace, in explicit mode). */
export function answerLine(text: string): { line: string; hasLinesBefore: boolean } {
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "");
  return { line: lines.at(-1) ?? "", hasLinesBefore: lines.length > 1 };
}
