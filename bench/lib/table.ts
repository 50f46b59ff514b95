/** Plain-text result tables for stdout. */

export type Cell = string | number | null;

export function fmt(x: Cell, digits = 2): string {
  if (x === null || (typeof x === "number" && Number.isNaN(x))) return "-";
  if (typeof x === "string") return x;
  return Number.isInteger(x) ? String(x) : x.toFixed(digits);
}

/** A titled two-column table in the layout of vLLM's `bench serve` result. */
export function keyValueTable(title: string, rows: ([string, Cell] | string)[], width = 56): string {
  const lines = [` ${title} `.padStart((width + title.length + 2) / 2, "=").padEnd(width, "=")];
  for (const row of rows) {
    if (typeof row === "string") lines.push(` ${row} `.padStart((width + row.length + 2) / 2, "-").padEnd(width, "-"));
    else lines.push(`${row[0].padEnd(width - 14)}${fmt(row[1]).padStart(14)}`);
  }
  lines.push("=".repeat(width));
  return lines.join("\n");
}

/** Columns: the first left-aligned, the rest right-aligned. */
export function gridTable(headers: string[], rows: Cell[][]): string {
  const cells = [headers, ...rows.map((r) => r.map((c) => fmt(c, 3)))];
  const widths = headers.map((_, j) => Math.max(...cells.map((r) => (r[j] ?? "").length)));
  const line = (r: string[]) => r.map((c, j) => (j === 0 ? c.padEnd(widths[j]!) : c.padStart(widths[j]!))).join("  ");
  return [line(headers), widths.map((w) => "-".repeat(w)).join("  "), ...cells.slice(1).map(line)].join("\n");
}

/** JSON with NaN and Infinity written as null (JSON has neither). */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v), 2);
}
