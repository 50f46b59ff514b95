import assert from "node:assert/strict";
import { test } from "node:test";
import type { EngineEvent, EngineStats, GenerateRequest, ScoreRequest } from "../src/engine/types.ts";
import { ServeMetrics } from "../src/ops/metrics.ts";
import { PROBE_ID_PREFIX } from "../src/ops/probe.ts";
import { sampling } from "./helpers/engine.ts";

/** The observer's arithmetic on scripted events with chosen timestamps (no worker, no HTTP). */

function gen(id: string, over: Partial<GenerateRequest> = {}): GenerateRequest {
  return {
    kind: "generate",
    id,
    promptIds: [2, 10, 11, 12],
    opensLatentSpan: false,
    sampling: sampling(),
    latent: { temperature: 1, returnVectors: false },
    choiceIndex: 0,
    leaderId: null,
    ...over,
  };
}

function finish(id: string, over: Partial<Extract<EngineEvent, { type: "finish" }>> = {}): EngineEvent {
  return {
    type: "finish",
    id,
    reason: "stop",
    promptTokens: 4,
    completionTokens: 0,
    thoughts: 0,
    cachedTokens: 0,
    queueTimeMs: 0,
    tail: "",
    ...over,
  };
}

const token = (id: string): EngineEvent => ({ type: "token", id, tokenId: 7, text: "x" });
const thought = (id: string, index: number): EngineEvent => ({
  type: "thought",
  id,
  index,
  logProb: -1,
  behaviourLogProb: null,
});

function stats(over: Partial<EngineStats> = {}): EngineStats {
  return {
    running: 0,
    waiting: 0,
    kvBlocksTotal: 100,
    kvBlocksUsed: 0,
    prefixCacheQueries: 0,
    prefixCacheHits: 0,
    preemptions: 0,
    steps: 0,
    lastStepMs: 0,
    lastBatchPositions: 0,
    lastBatchSequences: 0,
    promptTokens: 0,
    generationTokens: 0,
    thoughts: 0,
    topLogitsFallbacks: 0,
    ...over,
  };
}

/** The value of one series (labels besides model_name must match exactly); histogram parts
 * (_bucket, _sum, _count) are looked up in their family. */
async function value(m: ServeMetrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const family = m.registry.getSingleMetric(name) ? name : name.replace(/_(bucket|sum|count)$/, "");
  const metric = m.registry.getSingleMetric(family);
  assert.ok(metric, `no metric ${name}`);
  const { values } = await metric.get();
  const key = (l: object) =>
    JSON.stringify(
      Object.entries(l)
        .filter(([k]) => k !== "model_name")
        .map(([k, v]) => [k, String(v)])
        .sort(),
    );
  const hit = values.find(
    (v) => ((v as { metricName?: string }).metricName ?? family) === name && key(v.labels) === key(labels),
  );
  assert.ok(hit, `no series ${name}${JSON.stringify(labels)}`);
  return hit.value;
}

test("TTFT, inter-token latency, latent span and end-to-end latency come from event times", async () => {
  const m = new ServeMetrics("m");
  m.onSubmit(gen("a"), 1000);
  m.onEvent(thought("a", 0), 1040); // TTFT 40 ms: a thought is the first output
  m.onEvent(thought("a", 1), 1050);
  m.onEvent(thought("a", 2), 1070); // span: 1040 -> 1070
  m.onEvent(token("a"), 1075);
  m.onEvent(token("a"), 1080);
  m.onEvent(finish("a", { completionTokens: 2, thoughts: 3, queueTimeMs: 12, reason: "length" }), 1100);

  assert.equal(await value(m, "nfcot_time_to_first_token_seconds_count"), 1);
  assert.ok(Math.abs((await value(m, "nfcot_time_to_first_token_seconds_sum")) - 0.04) < 1e-9);
  // Gaps: 10, 20, 5, 5 ms.
  assert.equal(await value(m, "nfcot_inter_token_latency_seconds_count"), 4);
  assert.ok(Math.abs((await value(m, "nfcot_inter_token_latency_seconds_sum")) - 0.04) < 1e-9);
  assert.equal(await value(m, "nfcot_latent_span_seconds_count"), 1);
  assert.ok(Math.abs((await value(m, "nfcot_latent_span_seconds_sum")) - 0.03) < 1e-9);
  assert.ok(Math.abs((await value(m, "nfcot_e2e_request_latency_seconds_sum")) - 0.1) < 1e-9);
  assert.ok(Math.abs((await value(m, "nfcot_request_queue_time_seconds_sum")) - 0.012) < 1e-9);
  assert.equal(await value(m, "nfcot_generation_tokens_total"), 5, "2 tokens + 3 thoughts, as usage.completion_tokens");
  assert.equal(await value(m, "nfcot_thoughts_total"), 3);
  assert.equal(await value(m, "nfcot_thoughts_per_request_sum"), 3);
  assert.equal(await value(m, "nfcot_thoughts_per_request_bucket", { le: "2" }), 0);
  assert.equal(await value(m, "nfcot_thoughts_per_request_bucket", { le: "4" }), 1);
  assert.equal(await value(m, "nfcot_prompt_tokens_total"), 4);
  assert.equal(await value(m, "nfcot_request_success_total", { finished_reason: "length" }), 1);
  assert.equal(await value(m, "nfcot_request_success_total", { finished_reason: "stop" }), 0);
});

test("readiness probes are not traffic; n > 1 counts its shared prompt once; errors end tracking", async () => {
  const m = new ServeMetrics("m");
  const probe = gen(`${PROBE_ID_PREFIX}0`);
  m.onSubmit(probe, 0);
  m.onEvent(token(probe.id), 5);
  m.onEvent(finish(probe.id, { completionTokens: 1 }), 5);
  assert.equal(await value(m, "nfcot_generation_tokens_total"), 0);
  assert.equal(await value(m, "nfcot_request_success_total", { finished_reason: "stop" }), 0);
  assert.equal(await value(m, "nfcot_time_to_first_token_seconds_count"), 0);

  m.onSubmit(gen("r-0"), 0);
  m.onSubmit(gen("r-1", { choiceIndex: 1, leaderId: "r-0" }), 0);
  m.onEvent(finish("r-0"), 10);
  m.onEvent(finish("r-1", { cachedTokens: 4 }), 10);
  assert.equal(await value(m, "nfcot_prompt_tokens_total"), 4);
  assert.equal(await value(m, "nfcot_request_success_total", { finished_reason: "stop" }), 2);

  m.onSubmit(gen("bad"), 0);
  m.onEvent({ type: "error", id: "bad", code: "context_length_exceeded", message: "too long" }, 1);
  m.onEvent(token("bad"), 2); // nothing is tracked for it any more
  assert.equal(await value(m, "nfcot_generation_tokens_total"), 0);
});

test("scoring: trajectories are counted at submit, and a scoring finish is no generation", async () => {
  const m = new ServeMetrics("m");
  const score = (id: string, thoughts: number): ScoreRequest => ({
    kind: "score",
    id,
    promptIds: [2, 4],
    thoughts: Array.from({ length: thoughts }, () => new Float32Array(16)),
    answerIds: [7, 3],
  });
  m.onSubmit(score("s-0", 6), 0);
  m.onSubmit(score("s-1", 6), 0);
  m.onSubmit(score("echo", 0), 0); // echo logprobs of /v1/completions: not a latent trajectory
  for (const id of ["s-0", "s-1", "echo"]) {
    m.onEvent({ type: "score", id, thoughtLogProbs: [], thoughtBehaviourLogProbs: [], answerLogprobs: [] }, 3);
    m.onEvent(finish(id, { promptTokens: 2 }), 3);
  }
  assert.equal(await value(m, "nfcot_latent_scoring_trajectories_total"), 2);
  assert.equal(await value(m, "nfcot_thoughts_per_request_count"), 0);
  assert.equal(await value(m, "nfcot_prompt_tokens_total"), 6);
  m.recordLatentScoringRequest();
  assert.equal(await value(m, "nfcot_latent_scoring_requests_total"), 1);
});

test("engine totals become monotonic counters; gauges and iteration sizes follow the stats", async () => {
  const m = new ServeMetrics("m");
  m.onStats(
    stats({ prefixCacheQueries: 32, prefixCacheHits: 16, preemptions: 1, running: 3, waiting: 2, kvBlocksUsed: 25 }),
    [
      { ms: 1, positions: 40, sequences: 3 },
      { ms: 1, positions: 3, sequences: 3 },
    ],
  );
  m.onStats(stats({ prefixCacheQueries: 48, prefixCacheHits: 16, preemptions: 2 }), []);
  assert.equal(await value(m, "nfcot_prefix_cache_queries_total"), 48);
  assert.equal(await value(m, "nfcot_prefix_cache_hits_total"), 16);
  assert.equal(await value(m, "nfcot_num_preemptions_total"), 2);
  assert.equal(await value(m, "nfcot_num_requests_running"), 0);
  // A restarted engine reports smaller totals: the counter keeps counting up from its value.
  m.onStats(stats({ prefixCacheQueries: 5, running: 1, waiting: 4, kvBlocksUsed: 50 }), []);
  assert.equal(await value(m, "nfcot_prefix_cache_queries_total"), 53);
  assert.equal(await value(m, "nfcot_num_requests_running"), 1);
  assert.equal(await value(m, "nfcot_num_requests_waiting"), 4);
  assert.equal(await value(m, "nfcot_kv_cache_usage_perc"), 0.5);
  assert.equal(await value(m, "nfcot_iteration_tokens_count"), 2);
  assert.equal(await value(m, "nfcot_iteration_tokens_sum"), 43);
  assert.equal(await value(m, "nfcot_iteration_tokens_bucket", { le: "8" }), 1);
});

test("failures by code; every series carries model_name; process metrics have the prefix", async () => {
  const m = new ServeMetrics("my-model");
  m.recordFailure("queue_full");
  m.recordFailure("queue_full");
  assert.equal(await value(m, "nfcot_request_failure_total", { code: "queue_full" }), 2);
  assert.equal(await value(m, "nfcot_request_failure_total", { code: "invalid_api_key" }), 0);
  const text = await m.text();
  const samples = text.split("\n").filter((l) => l && !l.startsWith("#"));
  assert.ok(samples.length > 50);
  for (const s of samples) {
    assert.match(s, /^nfcot_[a-z0-9_]+\{/, s);
    assert.match(s, /model_name="my-model"/, s);
  }
  assert.match(text, /^nfcot_process_cpu_seconds_total\{/m);
  assert.match(text, /^nfcot_nodejs_eventloop_lag_seconds\{/m);
  assert.doesNotMatch(text, /nodejs_active_handles_total/);
});
