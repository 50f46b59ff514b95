import type { EngineInfo } from "./engine-info.ts";
import type { EngineEvent, EngineStats, GenerateRequest, ScoreRequest, StepRecord } from "./types.ts";

/** What the HTTP side may ask of the engine. The worker's client implements it; route tests use
 * in-process fakes and the OpenAPI generator a stand-in that runs nothing. */

export type ScoreEvent = Extract<EngineEvent, { type: "score" }>;

export interface WeightUpdateResult {
  version: string;
}

/** Sees every request and event on the HTTP thread (metrics hang off this, not off the routes). */
export interface EngineObserver {
  onSubmit(req: GenerateRequest | ScoreRequest, atMs: number): void;
  onEvent(e: EngineEvent, atMs: number): void;
  onStats(s: EngineStats, steps: StepRecord[]): void;
}

export interface EngineHandle {
  readonly info: EngineInfo;
  readonly alive: boolean;
  readonly stats: EngineStats | null;
  /** Requests submitted and not yet finished (for the queue limit). */
  readonly inFlight: number;
  /** The version requests sent now are stamped with (during an update: the incoming one). */
  readonly weightsVersion: string;
  readonly weightUpdates: { ok: number; failed: number; inProgress: string | null };
  observe(o: EngineObserver): void;
  generate(req: GenerateRequest): AsyncIterableIterator<EngineEvent>;
  score(req: ScoreRequest): Promise<ScoreEvent>;
  abort(id: string): void;
  decodeThoughts(thoughts: Float32Array[][]): Promise<number[][][]>;
  updateWeights(modelDir: string, version: string): Promise<WeightUpdateResult>;
  close(): Promise<void>;
}
