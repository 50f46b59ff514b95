import { endianness } from "node:os";
import type { Manifest } from "../model/manifest.ts";
import type { ModelTokenizer } from "../model/tokenizer.ts";
import { ServeError } from "../errors.ts";
import { FLOAT32_MAX } from "./float32-base64.ts";

/** Thought vectors on the wire: base64 of little-endian float32, or plain number arrays; and the
 * thought decoder's per-slot (variable, value) ids as trace text. */

const LITTLE = endianness() === "LE";

export function encodeThought(v: Float32Array): string {
  if (LITTLE) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64");
  const b = Buffer.alloc(v.length * 4);
  v.forEach((x, i) => b.writeFloatLE(x, i * 4));
  return b.toString("base64");
}

/** Null when the text is not canonical base64 (standard alphabet, padded, unused bits zero) of
 * whole float32s: exactly what the OpenAPI document's pattern admits (float32-base64.ts). */
export function decodeThought(s: string): Float32Array | null {
  const b = Buffer.from(s, "base64");
  if (b.toString("base64") !== s || b.length % 4 !== 0) return null;
  const out = new Float32Array(b.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = b.readFloatLE(i * 4);
  return out;
}

/** Exactly `count` thoughts of `dim` finite numbers, else 400 naming the offending element. */
export function parseThoughts(input: string[] | number[][], count: number, dim: number, param: string): Float32Array[] {
  if (input.length !== count) {
    throw new ServeError("invalid_request", `Expected ${count} thoughts (the model's K), got ${input.length}.`, param);
  }
  return input.map((t, i) => {
    const p = `${param}[${i}]`;
    if (typeof t !== "string") {
      // Beyond float32's range a number would round to Infinity: refuse it as it is.
      const far = t.findIndex((x) => Math.abs(x) > FLOAT32_MAX);
      if (far >= 0)
        throw new ServeError(
          "invalid_request",
          `Thought ${i} has a value outside float32's range (${t[far]}) at dimension ${far}.`,
          p,
        );
    }
    const v = typeof t === "string" ? decodeThought(t) : Float32Array.from(t);
    if (v === null)
      throw new ServeError("invalid_request", `Thought ${i} is not base64 of little-endian float32 values.`, p);
    if (v.length !== dim) {
      throw new ServeError(
        "invalid_request",
        `Thought ${i} has ${v.length} dimensions; the model's thoughts have ${dim}.`,
        p,
      );
    }
    // Arrays are rounded to float32 (what the model consumes): beyond its range they become Inf.
    const bad = v.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0)
      throw new ServeError(
        "invalid_request",
        `Thought ${i} has a non-finite value (${v[bad]}) at dimension ${bad}.`,
        p,
      );
    return v;
  });
}

export interface TraceStep {
  variable: string;
  value: string;
}

/** Per slot [variable, value] token ids -> steps, up to the first slot holding the decoder's stop
 * token (slots past a trace's end decode to (stop, stop); a half-stopped slot ends it too). */
export function traceSteps(slots: number[][], tokenizer: ModelTokenizer, manifest: Manifest): TraceStep[] {
  const stop = manifest.graphs.thought_decoder?.stop_token_id;
  const steps: TraceStep[] = [];
  for (const [variable, value] of slots) {
    if (variable === undefined || value === undefined || variable === stop || value === stop) break;
    steps.push({ variable: tokenizer.tokenText(variable), value: tokenizer.tokenText(value) });
  }
  return steps;
}

export function traceText(steps: TraceStep[], manifest: Manifest): string {
  const format = manifest.graphs.thought_decoder?.step_format ?? "{0} = {1}";
  return steps.map((s) => format.replace("{0}", s.variable).replace("{1}", s.value)).join("\n");
}
