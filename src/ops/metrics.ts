import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { EngineObserver } from "../engine/client.ts";
import type {
  EngineEvent,
  EngineStats,
  FinishReason,
  GenerateRequest,
  ScoreRequest,
  StepRecord,
} from "../engine/types.ts";
import { ERROR_CODES } from "../errors.ts";
import { isProbeRequest } from "./probe.ts";

/** Prometheus metrics: vLLM's set under the nfcot_ prefix (so its dashboards and autoscaling rules
 * translate name for name), NF-CoT's own (thoughts, latent scoring, latent spans), process
 * metrics. Fed by the engine observer on the HTTP thread, never by the routes. Every series
 * carries model_name. */

export const PREFIX = "nfcot_";

// vLLM's buckets, extended downwards: a small model here steps in milliseconds, not tens of them.
const TTFT_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640,
  2560,
];
const ITL_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80,
];
const LATENCY_BUCKETS = [
  0.01, 0.025, 0.05, 0.1, 0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680,
];
const ITERATION_BUCKETS = [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384];
const THOUGHT_BUCKETS = [0, 1, 2, 4, 8, 16, 32, 64, 128];

const FINISH_REASONS: FinishReason[] = ["stop", "length", "abort"];
const CLIENT_CLOSED = "client_closed_request";

/** What the observer remembers of a request between its submit and its finish. */
interface Live {
  submitMs: number;
  generation: boolean;
  /** Choices after the first of an n > 1 request share its prompt; usage counts a prompt once. */
  countsPrompt: boolean;
  lastOutputMs: number | null;
  spanFirstMs: number | null;
  spanLastMs: number | null;
}

export class ServeMetrics implements EngineObserver {
  readonly registry = new Registry();
  private readonly live = new Map<string, Live>();
  private prev: Pick<EngineStats, "prefixCacheQueries" | "prefixCacheHits" | "preemptions"> = {
    prefixCacheQueries: 0,
    prefixCacheHits: 0,
    preemptions: 0,
  };

  private readonly running: Gauge;
  private readonly waiting: Gauge;
  private readonly kvUsage: Gauge;
  private readonly prefixQueries: Counter;
  private readonly prefixHits: Counter;
  private readonly preemptions: Counter;
  private readonly promptTokens: Counter;
  private readonly generationTokens: Counter;
  private readonly success: Counter<"finished_reason">;
  private readonly failure: Counter<"code">;
  private readonly ttft: Histogram;
  private readonly itl: Histogram;
  private readonly e2e: Histogram;
  private readonly queueTime: Histogram;
  private readonly iterationTokens: Histogram;
  private readonly thoughts: Counter;
  private readonly thoughtsPerRequest: Histogram;
  private readonly scoringRequests: Counter;
  private readonly scoringTrajectories: Counter;
  private readonly latentSpan: Histogram;
  private readonly weightUpdates: Counter<"result">;
  private readonly weightsVersion: Gauge<"version">;

  constructor(modelName: string) {
    const registers = [this.registry];
    this.registry.setDefaultLabels({ model_name: modelName });
    const gauge = (name: string, help: string) => new Gauge({ name: PREFIX + name, help, registers });
    const counter = (name: string, help: string) => new Counter({ name: PREFIX + name, help, registers });
    const byLabel = <L extends string>(name: string, help: string, label: L) =>
      new Counter({ name: PREFIX + name, help, labelNames: [label], registers });
    const histogram = (name: string, help: string, buckets: number[]) =>
      new Histogram({ name: PREFIX + name, help, buckets, registers });

    this.running = gauge("num_requests_running", "Number of requests in the running batch.");
    this.waiting = gauge("num_requests_waiting", "Number of requests waiting to be scheduled.");
    this.kvUsage = gauge("kv_cache_usage_perc", "KV cache usage: fraction of KV blocks in use (1 = full).");
    this.prefixQueries = counter("prefix_cache_queries_total", "Prefix cache queries, in positions looked up.");
    this.prefixHits = counter("prefix_cache_hits_total", "Prefix cache hits, in positions found cached.");
    this.preemptions = counter(
      "num_preemptions_total",
      "Cumulative number of preemptions (sequences evicted to free KV blocks).",
    );
    this.promptTokens = counter(
      "prompt_tokens_total",
      "Prompt tokens processed (once per prompt, as usage.prompt_tokens counts them).",
    );
    this.generationTokens = counter(
      "generation_tokens_total",
      "Generated outputs: text tokens plus latent thoughts (as usage.completion_tokens counts them).",
    );
    this.success = byLabel("request_success_total", "Finished engine requests, by finish reason.", "finished_reason");
    this.failure = byLabel(
      "request_failure_total",
      "HTTP requests answered with an error, by the OpenAI error body's code.",
      "code",
    );
    this.ttft = histogram(
      "time_to_first_token_seconds",
      "Time from submission to the first output (thought or token).",
      TTFT_BUCKETS,
    );
    this.itl = histogram(
      "inter_token_latency_seconds",
      "Time between consecutive outputs (thoughts and tokens) of a request.",
      ITL_BUCKETS,
    );
    this.e2e = histogram("e2e_request_latency_seconds", "Time from submission to finish.", LATENCY_BUCKETS);
    this.queueTime = histogram(
      "request_queue_time_seconds",
      "Time a request waited before it was first scheduled.",
      LATENCY_BUCKETS,
    );
    // vLLM calls this one iteration_tokens_total; a histogram must not end in _total (promtool).
    this.iterationTokens = histogram("iteration_tokens", "Positions computed per engine step.", ITERATION_BUCKETS);
    this.thoughts = counter("thoughts_total", "Latent thoughts generated.");
    this.thoughtsPerRequest = histogram(
      "thoughts_per_request",
      "Latent thoughts per finished generation request.",
      THOUGHT_BUCKETS,
    );
    this.scoringRequests = counter(
      "latent_scoring_requests_total",
      "Latent scoring (POST /v1/latent/logprobs) requests answered successfully.",
    );
    this.scoringTrajectories = counter(
      "latent_scoring_trajectories_total",
      "Latent trajectories submitted for scoring.",
    );
    this.latentSpan = histogram(
      "latent_span_seconds",
      "Time from the first to the last thought of a latent span.",
      ITL_BUCKETS.concat([160, 640]),
    );

    this.weightUpdates = byLabel(
      "weight_updates_total",
      "Weight updates (POST /admin/weights): ok = swapped in, failed = refused, the old weights kept serving.",
      "result",
    );
    this.weightsVersion = new Gauge({
      name: `${PREFIX}weights_version_info`,
      help: "The weights version serving (label version; value 1).",
      labelNames: ["version"],
      registers,
    });
    for (const result of ["ok", "failed"]) this.weightUpdates.inc({ result }, 0);

    // Zero series exist from the start, so rate() and absent() work before the first event.
    for (const r of FINISH_REASONS) this.success.inc({ finished_reason: r }, 0);
    for (const code of Object.keys(ERROR_CODES)) if (code !== CLIENT_CLOSED) this.failure.inc({ code }, 0);

    collectDefaultMetrics({ register: this.registry, prefix: PREFIX });
    // prom-client also exports these gauges under a _total name; promtool rejects gauges named
    // _total, and the same values are there without the suffix (nfcot_nodejs_active_handles...).
    for (const name of [
      "nodejs_active_handles_total",
      "nodejs_active_requests_total",
      "nodejs_active_resources_total",
    ]) {
      this.registry.removeSingleMetric(PREFIX + name);
    }
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  onSubmit(req: GenerateRequest | ScoreRequest, atMs: number): void {
    if (isProbeRequest(req.id)) return;
    this.live.set(req.id, {
      submitMs: atMs,
      generation: req.kind === "generate",
      countsPrompt: req.kind === "score" || req.leaderId === null,
      lastOutputMs: null,
      spanFirstMs: null,
      spanLastMs: null,
    });
    if (req.kind === "score" && req.thoughts.length > 0) this.scoringTrajectories.inc();
  }

  onEvent(e: EngineEvent, atMs: number): void {
    const r = this.live.get(e.id);
    if (!r) return;
    switch (e.type) {
      case "thought":
        this.output(r, atMs);
        this.thoughts.inc();
        r.spanFirstMs ??= atMs;
        r.spanLastMs = atMs;
        break;
      case "token":
        this.endSpan(r);
        this.output(r, atMs);
        break;
      case "finish":
        this.endSpan(r);
        this.live.delete(e.id);
        this.success.inc({ finished_reason: e.reason });
        this.e2e.observe((atMs - r.submitMs) / 1000);
        this.queueTime.observe(Math.max(0, e.queueTimeMs) / 1000);
        if (r.countsPrompt) this.promptTokens.inc(e.promptTokens);
        if (r.generation) this.thoughtsPerRequest.observe(e.thoughts);
        break;
      case "error":
        this.live.delete(e.id);
        break;
      case "score":
        break;
    }
  }

  onStats(s: EngineStats, steps: StepRecord[]): void {
    this.running.set(s.running);
    this.waiting.set(s.waiting);
    this.kvUsage.set(s.kvBlocksTotal > 0 ? s.kvBlocksUsed / s.kvBlocksTotal : 0);
    // Engine totals become counters by their increase; a smaller value (an engine restarted under
    // the same observer) starts a new baseline instead of going backwards.
    const delta = (now: number, before: number) => (now >= before ? now - before : now);
    this.prefixQueries.inc(delta(s.prefixCacheQueries, this.prev.prefixCacheQueries));
    this.prefixHits.inc(delta(s.prefixCacheHits, this.prev.prefixCacheHits));
    this.preemptions.inc(delta(s.preemptions, this.prev.preemptions));
    this.prev = {
      prefixCacheQueries: s.prefixCacheQueries,
      prefixCacheHits: s.prefixCacheHits,
      preemptions: s.preemptions,
    };
    for (const step of steps) this.iterationTokens.observe(step.positions);
  }

  /** An HTTP request answered with an OpenAI error body (counted at the edge, by error.code). */
  recordFailure(code: string): void {
    // A client that went away is an abort, counted as request_success_total{finished_reason="abort"}
    // by the engine observer, as for chat.
    if (code === CLIENT_CLOSED) return;
    this.failure.inc({ code });
  }

  recordWeightUpdate(result: "ok" | "failed"): void {
    this.weightUpdates.inc({ result });
  }

  /** One series: the version serving now. */
  setWeightsVersion(version: string): void {
    this.weightsVersion.reset();
    this.weightsVersion.set({ version }, 1);
  }

  recordLatentScoringRequest(): void {
    this.scoringRequests.inc();
  }

  /** A thought or a token: both are generated outputs (usage counts thoughts as completion tokens). */
  private output(r: Live, atMs: number): void {
    this.generationTokens.inc();
    if (r.lastOutputMs === null) this.ttft.observe((atMs - r.submitMs) / 1000);
    else this.itl.observe((atMs - r.lastOutputMs) / 1000);
    r.lastOutputMs = atMs;
  }

  private endSpan(r: Live): void {
    if (r.spanFirstMs === null || r.spanLastMs === null) return;
    this.latentSpan.observe((r.spanLastMs - r.spanFirstMs) / 1000);
    r.spanFirstMs = r.spanLastMs = null;
  }
}
