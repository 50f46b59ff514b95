import assert from "node:assert/strict";
import { test } from "node:test";
import { answerLine, parseAnswer } from "../bench/lib/answer.ts";
import { runLoad, Semaphore } from "../bench/lib/load.ts";
import { poissonArrivals } from "../bench/lib/poisson.ts";
import { computeServeMetrics, meetsSlo, tpotOf } from "../bench/lib/serve-metrics.ts";
import type { StreamOutcome } from "../bench/lib/sse-client.ts";
import { SseParser } from "../bench/lib/sse-parser.ts";
import { mean, median, mode, percentile, std, summarize } from "../bench/lib/stats.ts";

/** The benchmark's own arithmetic: statistics (checked against numpy's values), the seeded
 * Poisson schedule, SSE parsing, the answer convention and the serving metrics' definitions. */

const close = (a: number, b: number, eps = 1e-9) => assert.ok(Math.abs(a - b) <= eps, `${a} != ${b}`);

test("mean, population std and numpy-style percentiles", () => {
  close(mean([1, 2, 3, 4]), 2.5);
  close(std([2, 4, 4, 4, 5, 5, 7, 9]), 2); // np.std
  const xs = [10, 1, 9, 2, 8, 3, 7, 4, 6, 5];
  close(percentile(xs, 99), 9.91); // np.percentile(range(1, 11), 99)
  close(percentile([15, 20, 35, 40, 50], 40), 29); // linear interpolation between order stats
  close(median([3, 1, 2]), 2);
  close(median([4, 1, 3, 2]), 2.5);
  close(percentile(xs, 0), 1);
  close(percentile(xs, 100), 10);
  assert.deepEqual(xs, [10, 1, 9, 2, 8, 3, 7, 4, 6, 5], "the input is not sorted in place");
  assert.throws(() => percentile(xs, 101), RangeError);
  const empty = summarize([]);
  assert.equal(empty.count, 0);
  assert.ok(Number.isNaN(empty.mean) && Number.isNaN(empty.p99));
  const s = summarize([5]);
  assert.deepEqual([s.mean, s.median, s.p99, s.std, s.min, s.max], [5, 5, 5, 0, 5, 5]);
});

test("mode: the majority answer and its count (first to reach the top count wins ties)", () => {
  assert.deepEqual(mode([3, 1, 3, 2, 1, 3]), { value: 3, count: 3 });
  assert.deepEqual(mode([7, 8]), { value: 7, count: 1 });
  assert.deepEqual(mode([]), { value: undefined, count: 0 });
});

test("Poisson schedule: seeded, starts at 0, non-decreasing, exponential gaps of mean 1/rate", () => {
  const a = poissonArrivals(20_000, 50, 7);
  assert.deepEqual(a, poissonArrivals(20_000, 50, 7), "same seed, same schedule");
  assert.notDeepEqual(a.slice(0, 10), poissonArrivals(10, 50, 8), "another seed, another schedule");
  assert.equal(a[0], 0);
  const gaps = a.slice(1).map((t, i) => t - a[i]!);
  assert.ok(gaps.every((g) => g >= 0));
  const m = mean(gaps);
  // 1/rate = 20 ms; the standard error of the mean over 20k gaps is 20 / sqrt(20k) = 0.14 ms.
  assert.ok(Math.abs(m - 20) < 0.6, `mean gap ${m} ms`);
  // Exponential: std = mean (coefficient of variation 1) and the median is mean * ln 2.
  assert.ok(Math.abs(std(gaps) / m - 1) < 0.05, `CV ${std(gaps) / m}`);
  assert.ok(Math.abs(median(gaps) / m - Math.LN2) < 0.03, `median / mean ${median(gaps) / m}`);
  // The schedule is fixed for a seed: pin a few values so a change of generator is noticed.
  const pinned = poissonArrivals(4, 10, 0);
  [0, 387.017353, 420.510901, 429.955998].forEach((want, i) => close(pinned[i]!, want, 1e-6));
});

test("Poisson schedule: rate inf sends everything at once; bad rates and counts are refused", () => {
  assert.deepEqual(poissonArrivals(5, Infinity, 1), [0, 0, 0, 0, 0]);
  assert.deepEqual(poissonArrivals(0, 3, 1), []);
  assert.throws(() => poissonArrivals(5, 0, 1), RangeError);
  assert.throws(() => poissonArrivals(5, -1, 1), RangeError);
  assert.throws(() => poissonArrivals(5, NaN, 1), RangeError);
  assert.throws(() => poissonArrivals(1.5, 1, 1), RangeError);
});

test("SSE parser: events split anywhere, several per chunk, CRLF, multi-byte characters split", () => {
  const p = new SseParser();
  const bytes = new TextEncoder().encode('data: {"a":"\u2603"}\n\ndata: [DONE]\r\n\r\n');
  const out: string[] = [];
  for (let i = 0; i < bytes.length; i++) out.push(...p.push(bytes.subarray(i, i + 1))); // byte by byte
  assert.deepEqual(out, ['{"a":"\u2603"}', "[DONE]"]);
  assert.equal(p.end(), null);
  const q = new SseParser();
  assert.deepEqual(q.push(": comment\n\ndata: 1\n\ndata:2\ndata: 3\n\nevent: x\n\ndata: 4"), ["1", "2\n3"]);
  assert.equal(q.end(), "data: 4", "an unterminated event is reported, not parsed");
});

test("parseAnswer: the integer on the last non-empty line, as nfcot.generate.parse_answer", () => {
  assert.equal(parseAnswer("b = 1\ng = 1 * 1 = 1\n1"), 1);
  assert.equal(parseAnswer("-10\n\n  "), -10);
  assert.equal(parseAnswer(" +7 "), 7);
  assert.equal(parseAnswer("x = 3\nn = 8 + 8 = 16"), null);
  assert.equal(parseAnswer("1.5"), null);
  assert.equal(parseAnswer(""), null);
  assert.deepEqual(answerLine("a = 1\n1\n"), { line: "1", hasLinesBefore: true });
  assert.deepEqual(answerLine("4"), { line: "4", hasLinesBefore: false });
});

function outcome(over: Partial<StreamOutcome>): StreamOutcome {
  return {
    ok: true,
    status: 200,
    error: null,
    startMs: 0,
    ttftMs: 10,
    e2eMs: 100,
    itlMs: [],
    text: "",
    thoughtChunks: 0,
    textChunks: 0,
    reasoningChunks: 0,
    finishReason: "stop",
    done: true,
    errorBody: null,
    id: "chatcmpl-1",
    usage: {
      prompt_tokens: 20,
      completion_tokens: 10,
      total_tokens: 30,
      completion_tokens_details: { reasoning_tokens: 6 },
    },
    ...over,
  };
}

test("serving metrics: TPOT = (E2E - TTFT) / (out - 1), ITL pooled, throughput over wall time, goodput", () => {
  const a = outcome({ ttftMs: 10, e2eMs: 100, itlMs: [10, 10, 10] }); // 10 tokens: TPOT 10
  const b = outcome({
    ttftMs: 50,
    e2eMs: 95,
    itlMs: [5, 40],
    usage: { prompt_tokens: 30, completion_tokens: 4, total_tokens: 34 },
  }); // TPOT 15
  const one = outcome({ ttftMs: 5, e2eMs: 5, usage: { prompt_tokens: 10, completion_tokens: 1, total_tokens: 11 } });
  const failed = outcome({ ok: false, error: "HTTP 429: full", status: 429, usage: null });
  close(tpotOf(a)!, 10);
  close(tpotOf(b)!, 15);
  assert.equal(tpotOf(one), null, "one output token has no TPOT");

  const m = computeServeMetrics([a, b, one, failed], 2, { ttftMs: 20, tpotMs: 12 });
  assert.equal(m.completed, 3);
  assert.equal(m.failed, 1);
  assert.equal(m.totalInputTokens, 60);
  assert.equal(m.totalOutputTokens, 15);
  assert.equal(m.totalReasoningTokens, 6);
  close(m.requestThroughput, 1.5);
  close(m.outputTokenThroughput, 7.5);
  close(m.totalTokenThroughput, 37.5);
  assert.equal(m.tpotMs.count, 2);
  close(m.tpotMs.mean, 12.5);
  assert.deepEqual(m.itlMs.count, 5);
  close(m.itlMs.mean, 15);
  close(m.ttftMs.median, 10);
  // a meets both; b misses TTFT (50 > 20) and TPOT; one meets (no TPOT counts as met).
  assert.equal(m.goodRequests, 2);
  close(m.goodput!, 1);
  assert.deepEqual(m.errors, [{ message: "HTTP 429: full", count: 1 }]);
  assert.equal(computeServeMetrics([a], 1).goodput, null, "no SLO given: no goodput");
  assert.equal(meetsSlo(a, { e2eMs: 99 }), false);
  assert.equal(meetsSlo(outcome({ ttftMs: null }), { ttftMs: 1000 }), false, "no first token misses a TTFT SLO");
});

test("load runner: arrivals are honoured and the concurrency cap holds", async () => {
  let inFlight = 0;
  let peak = 0;
  const started: number[] = [];
  const t0 = performance.now();
  const { results } = await runLoad({
    arrivalsMs: [0, 0, 0, 0, 0, 0, 40, 40],
    maxConcurrency: 3,
    send: async (i) => {
      started[i] = performance.now() - t0;
      peak = Math.max(peak, ++inFlight);
      await new Promise((r) => setTimeout(r, 15));
      inFlight--;
      return i * 2;
    },
  });
  assert.deepEqual(results, [0, 2, 4, 6, 8, 10, 12, 14]);
  assert.equal(peak, 3);
  assert.ok(started[6]! >= 39 && started[7]! >= 39, `late arrivals start on time, not before: ${started}`);

  const sem = new Semaphore(1);
  await sem.acquire();
  let got = false;
  const waiting = sem.acquire().then(() => (got = true));
  await new Promise((r) => setImmediate(r));
  assert.equal(got, false);
  sem.release();
  await waiting;
  assert.equal(got, true);
});
