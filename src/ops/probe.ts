import type { EngineHandle } from "../engine/engine-handle.ts";
import type { EngineEvent, GenerateRequest } from "../engine/types.ts";
import { greedySampling } from "../engine/sampling-params.ts";

/** Readiness proves the model answers: a one-token greedy generation through the engine (queue,
 * scheduler, forward pass, sampler) must finish within a timeout. It is a priority request, run
 * in the engine's next step ahead of any backlog, so a busy server stays ready. The result is cached briefly so
 * that frequent probes cost at most one tiny generation per second. */

export const PROBE_ID_PREFIX = "nfcot-readiness-probe-";

/** Probe generations are not user traffic: the metrics leave them out. */
export const isProbeRequest = (id: string) => id.startsWith(PROBE_ID_PREFIX);

export interface ProbeResult {
  ok: boolean;
  ms: number;
  message: string;
}

export class ReadinessProbe {
  private last: { result: ProbeResult; atMs: number } | null = null;
  private inFlight: Promise<ProbeResult> | null = null;
  private counter = 0;

  constructor(
    private readonly engine: EngineHandle,
    private readonly timeoutMs: number,
    private readonly cacheMs = 1000,
  ) {}

  check(): Promise<ProbeResult> {
    if (this.last && performance.now() - this.last.atMs < this.cacheMs) return Promise.resolve(this.last.result);
    // Concurrent checks share one probe generation.
    this.inFlight ??= this.run()
      .catch((e: Error): ProbeResult => ({ ok: false, ms: 0, message: `The readiness probe failed: ${e.message}.` }))
      .then((result) => {
        this.last = { result, atMs: performance.now() };
        this.inFlight = null;
        return result;
      });
    return this.inFlight;
  }

  private async run(): Promise<ProbeResult> {
    const t0 = performance.now();
    const ms = () => Math.round(performance.now() - t0);
    const req = this.request();
    let events: AsyncIterableIterator<EngineEvent>;
    try {
      events = this.engine.generate(req);
    } catch (e) {
      return { ok: false, ms: ms(), message: `The engine refused the readiness probe: ${(e as Error).message}.` };
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), this.timeoutMs)));
    try {
      for (;;) {
        const next = await Promise.race([events.next(), timeout]);
        if (next === "timeout") {
          await events.return?.(); // aborts the probe in the engine
          return {
            ok: false,
            ms: ms(),
            message: `A one-token probe generation did not finish within ${this.timeoutMs} ms.`,
          };
        }
        if (next.done) return { ok: false, ms: ms(), message: "The readiness probe ended without a result." };
        const e = next.value;
        if (e.type === "finish") return { ok: true, ms: ms(), message: "ok" };
        if (e.type === "error") return { ok: false, ms: ms(), message: `The readiness probe failed: ${e.message}.` };
      }
    } finally {
      clearTimeout(timer);
    }
  }

  private request(): GenerateRequest {
    // Any one valid id does; Qwen has no bos.
    const { bos, eos } = this.engine.info.special;
    return {
      kind: "generate",
      id: `${PROBE_ID_PREFIX}${this.counter++}`,
      promptIds: [bos ?? eos],
      opensLatentSpan: false,
      sampling: greedySampling({ maxTokens: 1 }),
      latent: { temperature: 0, returnVectors: false },
      choiceIndex: 0,
      leaderId: null,
      // Ahead of user work: a busy engine that still steps is ready; only a stuck one is not.
      priority: true,
    };
  }
}
