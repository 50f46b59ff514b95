import type { ForwardRow, Runner } from "../../src/engine/runner.ts";
import type { GenerateRequest } from "../../src/engine/types.ts";
import { greedySampling } from "../../src/engine/sampling-params.ts";

/** The bare runner's decode step: B sequences prefilled with `prompt` synthetic tokens, then
 * `steps` single-token steps (no sampling). Returns the mean ms per step. Each sequence owns
 * `blocksPerSeq` consecutive KV blocks from block 0. */
export async function msPerDecodeStep(
  r: Runner,
  o: { batch: number; prompt: number; steps: number; blocksPerSeq: number },
): Promise<number> {
  const { prompt: P, steps, blocksPerSeq } = o;
  const V = r.vocabSize;
  const tables = Array.from({ length: o.batch }, (_, b) =>
    Array.from({ length: blocksPerSeq }, (_, j) => b * blocksPerSeq + j),
  );
  await r.forward(
    tables.map((t, b) => ({
      tokens: Array.from({ length: P }, (_, i) => 3 + ((b * 7 + i * 13) % (V - 3))),
      thoughts: Array(P).fill(null),
      start: 0,
      blockTable: t,
      outputs: [P - 1],
    })),
  );
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) {
    await r.forward(
      tables.map(
        (t, b): ForwardRow => ({
          tokens: [3 + ((b + s) % (V - 3))],
          thoughts: [null],
          start: P + s,
          blockTable: t,
          outputs: [P + s],
        }),
      ),
    );
  }
  return (performance.now() - t0) / steps;
}

/** A greedy text request over plain prompt ids that ignores EOS: exactly `maxTokens` tokens. */
export function greedyTextRequest(id: string, promptIds: number[], maxTokens: number): GenerateRequest {
  return {
    kind: "generate",
    id,
    promptIds,
    opensLatentSpan: false,
    choiceIndex: 0,
    leaderId: null,
    latent: { temperature: 0, returnVectors: false },
    sampling: greedySampling({ maxTokens, ignoreEos: true }),
  };
}
