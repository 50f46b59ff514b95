import { Sequence } from "../../src/engine/sequence.ts";
import { greedySampling } from "../../src/engine/sampling-params.ts";
import type { GenerateRequest } from "../../src/engine/types.ts";

export { greedySampling };

/** A generation sequence of the given prompt (unit tests of the scheduler and block manager). */
export function makeSeq(
  id: string,
  promptIds: number[],
  opts: { leaderId?: string; priority?: boolean } = {},
): Sequence {
  const request: GenerateRequest = {
    kind: "generate",
    id,
    promptIds,
    opensLatentSpan: false,
    sampling: greedySampling(),
    latent: { temperature: 0, returnVectors: false },
    choiceIndex: 0,
    leaderId: opts.leaderId ?? null,
    ...(opts.priority ? { priority: true } : {}),
  };
  return new Sequence(request, 0);
}
