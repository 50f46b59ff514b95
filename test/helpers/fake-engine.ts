import type { FastifyInstance } from "fastify";
import { buildApp } from "../../src/app.ts";
import type { Config } from "../../src/config.ts";
import type { EngineHandle } from "../../src/engine/engine-handle.ts";
import { engineInfo } from "../../src/engine/engine-info.ts";
import type { EngineEvent, GenerateRequest, ScoreRequest } from "../../src/engine/types.ts";
import { loadManifest } from "../../src/model/manifest.ts";
import { ModelTokenizer } from "../../src/model/tokenizer.ts";
import { testConfig } from "./server.ts";

/** An in-process stand-in for EngineHandle, for route tests with fastify inject: it records what
 * the routes submit and replays scripted events. No worker, no model run. */

export interface FakeEngine {
  engine: EngineHandle;
  generated: GenerateRequest[];
  scored: ScoreRequest[];
  aborted: string[];
  /** Events for each generate request (the default: one token, then finish). */
  script: (req: GenerateRequest) => EngineEvent[];
  inFlight: number;
}

export function fakeEngine(): FakeEngine {
  const modelDir = testConfig().modelDir;
  const manifest = loadManifest(modelDir);
  const info = engineInfo(manifest, { modelDir, numBlocks: 64, blockSize: 16, provider: "cpu", weightsVersion: "v0" });
  const fake: Omit<FakeEngine, "engine"> = {
    generated: [],
    scored: [],
    aborted: [],
    inFlight: 0,
    script: (req) => [
      { type: "token", id: req.id, tokenId: 153, text: "7" },
      {
        type: "finish",
        id: req.id,
        reason: "stop",
        promptTokens: req.promptIds.length,
        completionTokens: 1,
        thoughts: 0,
        cachedTokens: 0,
        queueTimeMs: 0,
        tail: "",
      },
    ],
  };
  const engine: EngineHandle = {
    info,
    alive: true,
    weightsVersion: "v0",
    stats: null,
    weightUpdates: { ok: 0, failed: 0, inProgress: null },
    observe() {},
    get inFlight() {
      return fake.inFlight;
    },
    generate(req: GenerateRequest) {
      fake.generated.push(req);
      const events = fake.script(req);
      return (async function* () {
        for (const e of events) yield e;
      })();
    },
    async score(req: ScoreRequest) {
      fake.scored.push(req);
      return {
        type: "score" as const,
        id: req.id,
        thoughtLogProbs: req.thoughts.map(() => -1),
        thoughtBehaviourLogProbs: req.thoughts.map(() => (req.temperature ? -2 : null)),
        weightsVersion: "v0",
        answerLogprobs: req.answerIds.map((tokenId) => ({ tokenId, logprob: -0.5 })),
      };
    },
    abort(id: string) {
      fake.aborted.push(id);
    },
    async decodeThoughts(thoughts: Float32Array[][]) {
      return thoughts.map((ts) => ts.map(() => [21, 153]));
    },
    async updateWeights() {
      throw new Error("the fake engine has no weights");
    },
    async close() {},
  };
  return Object.assign(fake, { engine });
}

/** The app around a fake engine, not listening: drive it with app.inject. */
export async function injectApp(
  overrides: Partial<Config> = {},
  fake = fakeEngine(),
): Promise<{ app: FastifyInstance; fake: FakeEngine }> {
  const config = testConfig(overrides);
  const manifest = loadManifest(config.modelDir);
  const app = await buildApp({
    config,
    engine: fake.engine,
    tokenizer: new ModelTokenizer(config.modelDir, manifest),
    manifest,
  });
  await app.ready();
  return { app, fake };
}
