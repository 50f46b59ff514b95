import type { ForwardRow, Runner } from "../../src/engine/runner.ts";
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
}

export function fakeRunner(f: Faults = {}): Runner {
  return {
    vocabSize: V,
    thoughtDim: D,
    numThoughts: K,
    async forward(rows: ForwardRow[]) {
      f.calls?.push(rows.length);
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
      return { logits, mu: new Float32Array(n * D).fill(0.5), logSigma: new Float32Array(n * D) };
    },
  } as unknown as Runner;
}
