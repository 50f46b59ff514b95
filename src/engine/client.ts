import { Worker } from "node:worker_threads";
import type { EngineHandle, EngineObserver, ScoreEvent, WeightUpdateResult } from "./engine-handle.ts";
import type { EngineInfo } from "./engine-info.ts";
import type { EngineOptions } from "./options.ts";
import type { EngineEvent, EngineStats, GenerateRequest, ScoreRequest } from "./types.ts";
import type { FromWorker, ToWorker } from "./worker.ts";

export type { EngineHandle, EngineObserver, WeightUpdateResult } from "./engine-handle.ts";

/** A scoring request ended by an abort (client gone, drain deadline), not by a failure. */
export class RequestAborted extends Error {}

/** A request's events, as an async iterator that ends after its finish or error event. */
class EventChannel implements AsyncIterableIterator<EngineEvent> {
  private buf: EngineEvent[] = [];
  private waiter: ((r: IteratorResult<EngineEvent>) => void) | null = null;
  private done = false;

  constructor(private readonly onReturn: () => void) {}

  push(e: EngineEvent): void {
    if (this.done) return;
    if (e.type === "finish" || e.type === "error") this.done = true;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w({ value: e, done: false });
    } else this.buf.push(e);
  }

  get closed(): boolean {
    return this.done && this.buf.length === 0;
  }

  next(): Promise<IteratorResult<EngineEvent>> {
    const e = this.buf.shift();
    if (e) return Promise.resolve({ value: e, done: false });
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((r) => (this.waiter = r));
  }

  /** Leaving a for-await early (client gone) aborts the request. */
  return(): Promise<IteratorResult<EngineEvent>> {
    if (!this.done) this.onReturn();
    this.done = true;
    this.buf = [];
    // A read already waiting (another consumer) ends too, rather than hanging forever.
    const w = this.waiter;
    this.waiter = null;
    w?.({ value: undefined, done: true });
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

/** Why a weight update was refused: "conflict" (one in progress, or that version serves already),
 * "model_load_failed" (the directory cannot be served), "engine_error" (the worker died). */
export class WeightUpdateError extends Error {
  constructor(
    readonly code: "conflict" | "model_load_failed" | "engine_error",
    message: string,
  ) {
    super(message);
  }
}

/** Where the engine's lines go (the server maps them onto its logger): load progress at info,
 * sequences the engine failed at error, with the request ids in `fields`. */
export type EngineLog = (level: "info" | "warn" | "error", message: string, fields?: Record<string, unknown>) => void;

/** The HTTP thread's handle on the engine worker. Never waits on a forward pass. */
export class EngineClient implements EngineHandle {
  private readonly channels = new Map<string, EventChannel>();
  private readonly decodes = new Map<number, { resolve: (s: number[][][]) => void; reject: (e: Error) => void }>();
  private nextDecode = 0;
  private latest: EngineStats | null = null;
  private exited = false;
  private fatal: string | null = null;
  private readonly observers: EngineObserver[] = [];
  /** Stamped on every request sent: the weights that will run it. */
  private version: string;
  private updates = { ok: 0, failed: 0 };
  private update: {
    reqId: number;
    version: string;
    phase: "loading" | "armed";
    resolve: (r: WeightUpdateResult) => void;
    reject: (e: Error) => void;
  } | null = null;
  private nextUpdate = 0;

  private constructor(
    private readonly worker: Worker,
    readonly info: EngineInfo,
    private readonly log: EngineLog,
  ) {
    this.version = info.weightsVersion;
    worker.on("message", (m: FromWorker) => this.onMessage(m));
    worker.on("exit", () => {
      this.exited = true;
      const message = `the engine worker exited${this.fatal ? `: ${this.fatal}` : ""}`;
      this.log("error", message);
      const now = performance.now();
      for (const [id, ch] of this.channels) {
        const e: EngineEvent = { type: "error", id, code: "engine_error", message };
        for (const o of this.observers) o.onEvent(e, now);
        ch.push(e);
      }
      this.channels.clear();
      for (const d of this.decodes.values()) d.reject(new Error("the engine worker exited"));
      this.update?.reject(new WeightUpdateError("engine_error", "the engine worker exited during the weight update"));
      this.update = null;
    });
  }

  static start(opts: EngineOptions, log: EngineLog = () => {}): Promise<EngineClient> {
    const worker = new Worker(new URL("./worker-entry.mjs", import.meta.url), { workerData: opts });
    return new Promise((resolve, reject) => {
      const onMessage = (m: FromWorker) => {
        if (m.type === "progress") log("info", m.message, { phase: "load" });
        else if (m.type === "log") log(m.level, m.message, m.fields);
        else if (m.type === "fatal") reject(new Error(m.message));
        else if (m.type === "ready") {
          worker.off("message", onMessage);
          resolve(new EngineClient(worker, m.info, log));
        }
      };
      worker.on("message", onMessage);
      worker.once("error", reject);
      worker.once("exit", (code) => reject(new Error(`engine worker exited with code ${code} while starting`)));
    });
  }

  observe(o: EngineObserver): void {
    this.observers.push(o);
  }

  get alive(): boolean {
    return !this.exited;
  }

  get stats(): EngineStats | null {
    return this.latest;
  }

  /** Number of requests submitted and not yet finished (for the queue limit). */
  get inFlight(): number {
    return this.channels.size;
  }

  /** The version requests sent now are stamped with (during an update: the incoming one). */
  get weightsVersion(): string {
    return this.version;
  }

  /** Weight updates so far, and the one in progress. */
  get weightUpdates(): { ok: number; failed: number; inProgress: string | null } {
    return { ...this.updates, inProgress: this.update?.version ?? null };
  }

  /** Loads `modelDir` beside the serving weights, then swaps it in between two engine steps once
   * the requests sent before the swap was armed have finished under the old weights; requests
   * sent after that wait for, and run under, the new ones. Resolves when the new weights serve.
   * A refused load (missing or corrupt files, another architecture) rejects and changes nothing. */
  updateWeights(modelDir: string, version: string): Promise<WeightUpdateResult> {
    if (this.update) {
      return Promise.reject(
        new WeightUpdateError("conflict", `a weight update to ${this.update.version} is in progress`),
      );
    }
    if (version === this.version) {
      return Promise.reject(new WeightUpdateError("conflict", `version ${version} is the one serving`));
    }
    const reqId = this.nextUpdate++;
    return new Promise((resolve, reject) => {
      this.update = { reqId, version, phase: "loading", resolve, reject };
      this.send({ type: "load", reqId, modelDir });
    });
  }

  generate(req: GenerateRequest): AsyncIterableIterator<EngineEvent> {
    req.weightsVersion ??= this.version;
    const ch = new EventChannel(() => this.abort(req.id));
    this.send({ type: "add", req });
    this.channels.set(req.id, ch);
    for (const o of this.observers) o.onSubmit(req, performance.now());
    return ch;
  }

  async score(req: ScoreRequest): Promise<ScoreEvent> {
    req.weightsVersion ??= this.version;
    const ch = new EventChannel(() => this.abort(req.id));
    this.send({ type: "add", req });
    this.channels.set(req.id, ch);
    for (const o of this.observers) o.onSubmit(req, performance.now());
    let result: ScoreEvent | null = null;
    for await (const e of ch) {
      if (e.type === "score") result = e;
      else if (e.type === "error") throw Object.assign(new Error(e.message), { code: e.code });
      else if (e.type === "finish" && e.reason === "abort" && !result)
        throw new RequestAborted(`scoring request ${req.id} was aborted`);
    }
    if (!result) throw new Error("scoring ended without a result");
    return result;
  }

  abort(id: string): void {
    if (this.channels.has(id)) this.send({ type: "abort", id });
  }

  decodeThoughts(thoughts: Float32Array[][]): Promise<number[][][]> {
    const reqId = this.nextDecode++;
    return new Promise((resolve, reject) => {
      this.decodes.set(reqId, { resolve, reject });
      this.send({ type: "decode", reqId, thoughts });
    });
  }

  async close(): Promise<void> {
    if (this.exited) return;
    const done = new Promise((r) => this.worker.once("exit", r));
    this.send({ type: "shutdown" });
    await Promise.race([done, new Promise((r) => setTimeout(r, 2000))]);
    if (!this.exited) await this.worker.terminate();
  }

  private send(m: ToWorker): void {
    if (this.exited) throw new Error("the engine worker is not running");
    this.worker.postMessage(m);
  }

  private onMessage(m: FromWorker): void {
    if (m.type === "events") {
      this.latest = m.stats;
      const now = performance.now();
      for (const o of this.observers) o.onStats(m.stats, m.steps);
      for (const e of m.events) {
        for (const o of this.observers) o.onEvent(e, now);
        const ch = this.channels.get(e.id);
        if (!ch) continue;
        ch.push(e);
        if (e.type === "finish" || e.type === "error") this.channels.delete(e.id);
      }
    } else if (m.type === "fatal") {
      this.fatal = m.message;
    } else if (m.type === "progress") {
      this.log("info", m.message, { phase: "load" });
    } else if (m.type === "loaded") {
      const u = this.update;
      if (!u || u.reqId !== m.reqId) return;
      if (m.error !== undefined) {
        this.update = null;
        this.updates.failed++;
        u.reject(new WeightUpdateError("model_load_failed", m.error));
        return;
      }
      // From here on every request sent is stamped with the new version; the worker sees this
      // "arm" after every request sent before it, so those are the ones that finish on the old weights.
      this.version = u.version;
      u.phase = "armed";
      this.send({ type: "arm", reqId: u.reqId, version: u.version });
    } else if (m.type === "swapped") {
      const u = this.update;
      if (!u || u.reqId !== m.reqId) return;
      this.update = null;
      this.updates.ok++;
      u.resolve({ version: m.version });
    } else if (m.type === "log") {
      this.log(m.level, m.message, m.fields);
    } else if (m.type === "decoded") {
      const d = this.decodes.get(m.reqId);
      this.decodes.delete(m.reqId);
      if (m.steps) d?.resolve(m.steps);
      else d?.reject(new Error(m.error ?? "decode failed"));
    }
  }
}
