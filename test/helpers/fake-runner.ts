import type { ForwardOptions, ForwardRow, Runner } from "../../src/engine/runner.ts";
import { THOUGHT } from "../../src/model/positions.ts";

/** A fake runner for engine unit tests (one layer under test): its logits always favour token
 * (last input token + 1), and its NF head gives mu = 0.5, sigma = 1 everywhere. Faults, for the
 * isolation tests: a row holding `throwsOn` makes the whole forward pass throw (as onnxruntime
 * does for an out-of-range id); a row whose last token is `nanAfter` gets NaN logits. */
export const V = 16;
export const D = 2;
export const K = 3;
export const SPECIAL = { eos: 15, bot: 14, pad: 0 };

export interface Faults {
  throwsOn?: number;
  nanAfter?: number;
  /** Rows per forward call, appended as they happen. */
  calls?: number[];
  /** Gives top_logits / top_ids of this k (as the exported backbone's TopK: descending, ties lower
   * id first) and leaves the logits out when a call asks for none. */
  topK?: number;
  /** Whether each forward call asked for the logits, appended as they happen. */
  logitsFetched?: boolean[];
}

/** The k largest of one row, descending, ties lower id first (ONNX TopK's order). */
function topOf(row: Float32Array, k: number): number[] {
  return Array.from(row.keys())
    .sort((a, b) => row[b]! - row[a]! || a - b)
    .slice(0, k);
}

export function fakeRunner(f: Faults = {}): Runner {
  return {
    vocabSize: V,
    thoughtDim: D,
    numThoughts: K,
    topK: f.topK ?? 0,
    async forward(rows: ForwardRow[], options: ForwardOptions = { logits: true }) {
      f.calls?.push(rows.length);
      f.logitsFetched?.push(options.logits);
      if (rows.some((r) => Array.from(r.tokens).includes(f.throwsOn ?? NaN)))
        throw new Error("indices element out of data bounds");
      const n = rows.reduce((s, r) => s + r.outputs.length, 0);
      const logits = new Float32Array(n * V);
      let o = 0;
      for (const r of rows) {
        for (const p of r.outputs) {
          const last = r.tokens[p - r.start]!;
          if (last === f.nanAfter) logits.fill(NaN, o * V, (o + 1) * V);
          else logits[o * V + (last === THOUGHT ? 5 : (last + 1) % V)] = 10;
          o++;
        }
      }
      const heads = { mu: new Float32Array(n * D).fill(0.5), logSigma: new Float32Array(n * D) };
      const k = f.topK ?? 0;
      if (k === 0) return { logits, ...heads };
      const topIds = new BigInt64Array(n * k);
      const topLogits = new Float32Array(n * k);
      for (let i = 0; i < n; i++) {
        const row = logits.subarray(i * V, (i + 1) * V);
        topOf(row, k).forEach((id, j) => {
          topIds[i * k + j] = BigInt(id);
          topLogits[i * k + j] = row[id]!;
        });
      }
      return { logits: options.logits ? logits : new Float32Array(0), topLogits, topIds, ...heads };
    },
  } as unknown as Runner;
}
