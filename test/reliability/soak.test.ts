import assert from "node:assert/strict";
import { test } from "node:test";
import { Agent } from "undici";
import { fetchJson } from "../../bench/lib/http-json.ts";
import { streamChatCompletion } from "../../bench/lib/sse-client.ts";
import { median } from "../../bench/lib/stats.ts";
import { loadTestSplit } from "../../bench/lib/test-split.ts";
import { startServer, waitFor } from "../helpers/server.ts";
import { report, scaled } from "./helpers/scale.ts";
import { collectGarbage } from "./helpers/gc.ts";
import { ServerWatch } from "./helpers/server-watch.ts";

/** Soak: steady mixed load (streams in every mode, whole responses, text completions, latent
 * scoring, and streams the client abandons) for a set time after a warm-up. The resident memory
 * of this process (the server runs in it, its engine worker thread included) grows by less than
 * 5% over the soak, and every request succeeds. RSS is read under load once a second, right after
 * a full collection of the main heap (without it the collector's sawtooth, tens of MiB and longer
 * than the reduced soak, would swamp 5%), and the growth is that of the least-squares line
 * through the readings from the soak's start to its end (robust to one noisy reading). */

/** Warm-up: at least this long and this many requests, and until RSS settles (SETTLE_READINGS
 * readings within SETTLE_SPREAD of each other), but no longer than WARMUP_MAX_MS. The request
 * count keeps a slow (shared, busy) machine warming up for as much work as a quiet one: by time
 * alone, one served half the requests, "settled" 20 MiB below the quiet runs' level and then
 * climbed to it during the soak (9% growth, flat afterwards, heap flat). */
const WARMUP_MS = scaled(4_000, 15_000);
const WARMUP_REQUESTS = scaled(800, 3_000);
const WARMUP_MAX_MS = scaled(25_000, 60_000);
const SETTLE_READINGS = 4;
const SETTLE_SPREAD = 0.01;
const SOAK_MS = scaled(8_000, 60_000);
const WORKERS = scaled(2, 4);
const SAMPLE_MS = 200;
const READING_MS = scaled(1_000, 2_000);
const MAX_GROWTH = 0.05;

test(`soak: steady load for ${SOAK_MS / 1000} s after a warm-up, RSS growth under 5%`, {
  timeout: SOAK_MS + WARMUP_MAX_MS + 120_000,
}, async (t) => {
  const s = await startServer();
  const watch = new ServerWatch(s.app.server);
  const agent = new Agent({ connections: WORKERS * 2, keepAliveTimeout: 30_000 });
  const programs = loadTestSplit().slice(0, 200);
  const zeros = Array.from({ length: s.engine.info.numThoughts }, () =>
    Array<number>(s.engine.info.thoughtDim).fill(0),
  );
  const failures: string[] = [];
  let requests = 0;
  let stop = false;

  /** One request of the mix; k picks the kind and the prompt. */
  async function one(k: number): Promise<void> {
    const p = programs[k % programs.length]!;
    const messages = [{ role: "user", content: p.source }];
    const kind = k % 6;
    if (kind <= 2) {
      const mode = (["none", "explicit", "latent"] as const)[kind];
      const r = await streamChatCompletion(
        s.url,
        {
          model: "nfcot-trace-small",
          messages,
          max_tokens: 48,
          temperature: k % 2 ? 0 : 0.7,
          seed: k,
          reasoning: { mode },
        },
        { dispatcher: agent },
      );
      if (!r.ok) failures.push(`stream ${mode}: ${r.error}`);
    } else if (kind === 3) {
      const r = await fetchJson(`${s.url}/v1/chat/completions`, {
        body: {
          model: "nfcot-trace-small",
          messages,
          n: 2,
          max_tokens: 32,
          seed: k,
          reasoning: { return_thoughts: true },
        },
        dispatcher: agent,
      });
      if (r.status !== 200) failures.push(`chat n=2: HTTP ${r.status}`);
      const c = await fetchJson(`${s.url}/v1/completions`, {
        body: { model: "nfcot-trace-small", prompt: p.source, max_tokens: 16 },
        dispatcher: agent,
      });
      if (c.status !== 200) failures.push(`completions: HTTP ${c.status}`);
    } else if (kind === 4) {
      const r = await fetchJson(`${s.url}/v1/latent/logprobs`, {
        body: { model: "nfcot-trace-small", messages, trajectories: [{ thoughts: zeros, answer: String(p.answer) }] },
        dispatcher: agent,
      });
      if (r.status !== 200) failures.push(`latent logprobs: HTTP ${r.status}`);
    } else {
      // A client that leaves after a few chunks: its sequence must be freed every time.
      const ac = new AbortController();
      await streamChatCompletion(
        s.url,
        { model: "nfcot-trace-small", messages, max_tokens: 64, ignore_eos: true, reasoning: { mode: "explicit" } },
        {
          dispatcher: agent,
          signal: ac.signal,
          onChunk: (n) => void (n >= 3 + (k % 5) && ac.abort()),
        },
      );
    }
    requests++;
  }

  const samples: { at: number; rss: number; heap: number }[] = [];
  const t0 = performance.now();
  const sampler = setInterval(() => {
    const m = process.memoryUsage();
    samples.push({ at: performance.now() - t0, rss: m.rss, heap: m.heapUsed });
  }, SAMPLE_MS);
  const workers = Array.from({ length: WORKERS }, async (_, w) => {
    for (let k = w; !stop; k += WORKERS) await one(k);
  });
  try {
    // Warm-up: at least WARMUP_MS and until RSS (read after a collection, at the soak's cadence)
    // settles: the process grows for its first seconds of load (arenas, the worker's heap), and
    // that growth is not what the soak measures. A slower machine simply warms up longer.
    const warmupReadings: number[] = [];
    let settled = false;
    while (performance.now() - t0 < WARMUP_MAX_MS) {
      await new Promise((r) => setTimeout(r, READING_MS));
      collectGarbage();
      warmupReadings.push(process.memoryUsage().rss);
      const last = warmupReadings.slice(-SETTLE_READINGS);
      settled =
        last.length === SETTLE_READINGS && (Math.max(...last) - Math.min(...last)) / Math.min(...last) < SETTLE_SPREAD;
      if (settled && performance.now() - t0 >= WARMUP_MS && requests >= WARMUP_REQUESTS) break;
    }
    const warmupS = (performance.now() - t0) / 1000;
    const warmupRequests = requests;
    const readings: { s: number; rss: number; heap: number }[] = [];
    const soakStart = performance.now();
    for (let at = 0; at <= SOAK_MS; at += READING_MS) {
      await new Promise((r) => setTimeout(r, soakStart + at - performance.now()));
      collectGarbage();
      const m = process.memoryUsage();
      readings.push({ s: (performance.now() - soakStart) / 1000, rss: m.rss, heap: m.heapUsed });
    }
    stop = true;
    await Promise.all(workers);
    clearInterval(sampler);
    await waitFor(() => s.engine.stats?.kvBlocksUsed === 0 && s.engine.inFlight === 0, 15_000, "kv blocks back to 0");

    const fit = leastSquares(readings.map((r) => [r.s, r.rss]));
    const fitStart = fit.intercept;
    const fitEnd = fit.intercept + fit.slope * (SOAK_MS / 1000);
    const growth = fitEnd / fitStart - 1;
    const [first, last] = [readings[0]!, readings.at(-1)!];
    const window = samples.filter((x) => x.at >= warmupS * 1000);
    const MiB = 1024 * 1024;
    report(t, "soak", {
      "warm-up s": warmupS,
      "warm-up requests": warmupRequests,
      "rss settled in the warm-up": settled,
      "soak s": SOAK_MS / 1000,
      "requests in the soak": requests - warmupRequests,
      "requests/s": (requests - warmupRequests) / (SOAK_MS / 1000),
      failed: failures.length,
      "rss readings": readings.length,
      "rss first / last reading MiB": `${(first.rss / MiB).toFixed(1)} / ${(last.rss / MiB).toFixed(1)}`,
      "rss fitted start / end MiB": `${(fitStart / MiB).toFixed(1)} / ${(fitEnd / MiB).toFixed(1)}`,
      "rss growth %": growth * 100,
      "rss median / peak under load MiB": `${(median(window.map((x) => x.rss)) / MiB).toFixed(0)} / ${(Math.max(...window.map((x) => x.rss)) / MiB).toFixed(0)}`,
      "heap first / last reading MiB": `${(first.heap / MiB).toFixed(1)} / ${(last.heap / MiB).toFixed(1)}`,
      "kv blocks used after": s.engine.stats!.kvBlocksUsed,
      "server 5xx": watch.serverErrors,
    });
    t.diagnostic(
      `rss after collection, MiB at s: ${readings.map((r) => `${(r.rss / MiB).toFixed(0)}@${r.s.toFixed(0)}`).join(" ")}`,
    );
    assert.deepEqual(failures.slice(0, 10), [], "every request of the soak succeeds");
    assert.ok(growth < MAX_GROWTH, `RSS grew ${(growth * 100).toFixed(1)}% (limit ${MAX_GROWTH * 100}%)`);
    assert.equal(watch.serverErrors, 0);
    assert.deepEqual(watch.rejections.map(String), []);
  } finally {
    stop = true;
    clearInterval(sampler);
    await Promise.all(workers);
    watch.stop();
    await agent.close();
    await s.close();
  }
});

/** y = intercept + slope * x through the points, by least squares. */
function leastSquares(points: [number, number][]): { slope: number; intercept: number } {
  const n = points.length;
  const mx = points.reduce((a, [x]) => a + x, 0) / n;
  const my = points.reduce((a, [, y]) => a + y, 0) / n;
  const sxy = points.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0);
  const sxx = points.reduce((a, [x]) => a + (x - mx) ** 2, 0);
  const slope = sxx === 0 ? 0 : sxy / sxx;
  return { slope, intercept: my - slope * mx };
}
