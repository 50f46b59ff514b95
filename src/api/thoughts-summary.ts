import type { EngineEvent } from "../engine/types.ts";
import { encodeThought } from "./thoughts.ts";

/** A choice's latent thoughts as responses report them: per-thought densities, their sums, and
 * on request the vectors, the flow's log-det and the decoded trace. */

export type ThoughtEvent = Extract<EngineEvent, { type: "thought" }>;

/** One sampled thought as a choice keeps it. */
export interface ThoughtRecord {
  logProb: number;
  behaviourLogProb: number | null;
  vector?: Float32Array;
}

export function thoughtRecord(e: ThoughtEvent): ThoughtRecord {
  return { logProb: e.logProb, behaviourLogProb: e.behaviourLogProb, ...(e.vector ? { vector: e.vector } : {}) };
}

export interface ThoughtsSummary {
  count: number;
  log_prob: number;
  log_probs: number[];
  temperature: number;
  behaviour_log_probs: (number | null)[];
  behaviour_log_prob: number | null;
  flow_log_det?: number;
  e_log_prob?: number;
  vectors?: string[];
  decoded?: string;
}

/** log_probs are the model's T_z = 1 density; behaviour_log_probs the density at the T_z that
 * drew them (what an importance ratio divides by); flow_log_det and e_log_prob when asked. */
export function thoughtsSummary(
  thoughts: ThoughtRecord[],
  opts: { vectors: boolean; decoded?: string | undefined; temperature: number; flowLogDet?: number | null },
): ThoughtsSummary {
  const logProbs = thoughts.map((t) => t.logProb);
  const behaviour = thoughts.map((t) => t.behaviourLogProb);
  const logProb = logProbs.reduce((s, x) => s + x, 0);
  const flow = opts.flowLogDet ?? null;
  return {
    count: thoughts.length,
    log_prob: logProb,
    log_probs: logProbs,
    temperature: opts.temperature,
    behaviour_log_probs: behaviour,
    behaviour_log_prob: behaviour.some((b) => b === null) ? null : behaviour.reduce((s: number, x) => s + x!, 0),
    ...(flow !== null ? { flow_log_det: flow, e_log_prob: logProb + flow } : {}),
    ...(opts.vectors ? { vectors: thoughts.filter((t) => t.vector).map((t) => encodeThought(t.vector!)) } : {}),
    ...(opts.decoded !== undefined ? { decoded: opts.decoded } : {}),
  };
}

/** A stream's thought chunk: one thought, with its vector when the client asked for vectors. */
export function streamThought(e: ThoughtEvent, withVector: boolean) {
  return {
    index: e.index,
    log_prob: e.logProb,
    behaviour_log_prob: e.behaviourLogProb,
    ...(e.vector && withVector ? { vector: encodeThought(e.vector) } : {}),
  };
}

/** A choice's thought vectors, or null when the engine did not return them all. */
export function spanOf(thoughts: { vector?: Float32Array }[]): Float32Array[] | null {
  return thoughts.every((t) => t.vector) ? thoughts.map((t) => t.vector!) : null;
}
