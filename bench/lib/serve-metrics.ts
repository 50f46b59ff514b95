import { summarize, type Summary } from "./stats.ts";
import type { StreamOutcome } from "./sse-client.ts";

/** The serving benchmark's result, defined as in vLLM's `bench serve`:
 * - TTFT: request sent -> first output chunk (a thought or a text delta);
 * - TPOT per request: (E2E - TTFT) / (output tokens - 1), output tokens = usage.completion_tokens
 *   (thoughts included); requests with one output token have none;
 * - ITL: every gap between output chunks, pooled over all requests;
 * - throughput over the benchmark's wall time, from successful requests only;
 * - goodput: successful requests/s that meet every SLO given (none given: not computed). A
 *   request without a TPOT meets the TPOT SLO, as in vLLM. */

export interface Slo {
  ttftMs?: number;
  tpotMs?: number;
  e2eMs?: number;
}

export interface ServeMetrics {
  completed: number;
  failed: number;
  durationS: number;
  totalInputTokens: number;
  totalOutputTokens: number;
  totalReasoningTokens: number;
  requestThroughput: number;
  outputTokenThroughput: number;
  totalTokenThroughput: number;
  goodput: number | null;
  goodRequests: number | null;
  ttftMs: Summary;
  tpotMs: Summary;
  itlMs: Summary;
  e2eMs: Summary;
  /** The first few distinct failure messages with their counts. */
  errors: { message: string; count: number }[];
}

export function tpotOf(r: StreamOutcome): number | null {
  const out = r.usage?.completion_tokens ?? 0;
  if (r.ttftMs === null || out <= 1) return null;
  return (r.e2eMs - r.ttftMs) / (out - 1);
}

export function meetsSlo(r: StreamOutcome, slo: Slo): boolean {
  if (slo.ttftMs !== undefined && (r.ttftMs === null || r.ttftMs > slo.ttftMs)) return false;
  const tpot = tpotOf(r);
  if (slo.tpotMs !== undefined && tpot !== null && tpot > slo.tpotMs) return false;
  if (slo.e2eMs !== undefined && r.e2eMs > slo.e2eMs) return false;
  return true;
}

export function computeServeMetrics(results: StreamOutcome[], durationS: number, slo: Slo = {}): ServeMetrics {
  const ok = results.filter((r) => r.ok);
  const sum = (f: (r: StreamOutcome) => number) => ok.reduce((s, r) => s + f(r), 0);
  const totalInputTokens = sum((r) => r.usage?.prompt_tokens ?? 0);
  const totalOutputTokens = sum((r) => r.usage?.completion_tokens ?? 0);
  const hasSlo = slo.ttftMs !== undefined || slo.tpotMs !== undefined || slo.e2eMs !== undefined;
  const good = hasSlo ? ok.filter((r) => meetsSlo(r, slo)).length : null;
  const errors = new Map<string, number>();
  for (const r of results) if (!r.ok) errors.set(r.error ?? "failed", (errors.get(r.error ?? "failed") ?? 0) + 1);
  return {
    completed: ok.length,
    failed: results.length - ok.length,
    durationS,
    totalInputTokens,
    totalOutputTokens,
    totalReasoningTokens: sum((r) => r.usage?.completion_tokens_details?.reasoning_tokens ?? 0),
    requestThroughput: ok.length / durationS,
    outputTokenThroughput: totalOutputTokens / durationS,
    totalTokenThroughput: (totalInputTokens + totalOutputTokens) / durationS,
    goodput: good === null ? null : good / durationS,
    goodRequests: good,
    ttftMs: summarize(ok.flatMap((r) => (r.ttftMs === null ? [] : [r.ttftMs]))),
    tpotMs: summarize(ok.flatMap((r) => tpotOf(r) ?? [])),
    itlMs: summarize(ok.flatMap((r) => r.itlMs)),
    e2eMs: summarize(ok.map((r) => r.e2eMs)),
    errors: [...errors]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 5)
      .map(([message, count]) => ({ message, count })),
  };
}
