import type { FastifyBaseLogger } from "fastify";
import type { EngineHandle } from "../engine/engine-handle.ts";
import type { Manifest } from "../model/manifest.ts";
import type { ModelTokenizer } from "../model/tokenizer.ts";
import { traceSteps, traceText } from "./thoughts.ts";

/** Thought spans -> trace text through the model's thought decoder. Requests made in the same
 * turn of the event loop (choices finishing in one engine step) share one decoder run. A decoder
 * failure costs the traces, not the responses (undefined). */
export class TraceDecoder {
  private queue: { span: Float32Array[]; resolve: (text: string | undefined) => void }[] = [];
  private scheduled = false;

  constructor(
    private readonly engine: EngineHandle,
    private readonly tokenizer: ModelTokenizer,
    private readonly manifest: Manifest,
    private readonly log: FastifyBaseLogger,
  ) {}

  /** Undefined where the model has no decoder or the span is not a full one (K thoughts). */
  decode(spans: (Float32Array[] | null)[]): Promise<(string | undefined)[]> {
    const { hasThoughtDecoder, numThoughts } = this.engine.info;
    return Promise.all(
      spans.map((span) => {
        if (!hasThoughtDecoder || !span || span.length !== numThoughts) return undefined;
        return new Promise<string | undefined>((resolve) => {
          this.queue.push({ span, resolve });
          if (!this.scheduled) {
            this.scheduled = true;
            setImmediate(() => void this.flush());
          }
        });
      }),
    );
  }

  private async flush(): Promise<void> {
    const batch = this.queue;
    this.queue = [];
    this.scheduled = false;
    try {
      const slots = await this.engine.decodeThoughts(batch.map((b) => b.span));
      batch.forEach((b, i) =>
        b.resolve(traceText(traceSteps(slots[i]!, this.tokenizer, this.manifest), this.manifest)),
      );
    } catch (err) {
      this.log.warn({ err }, "thought decoder failed; responding without decoded traces");
      for (const b of batch) b.resolve(undefined);
    }
  }
}
