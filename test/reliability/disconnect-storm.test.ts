import assert from "node:assert/strict";
import { request as httpRequest } from "node:http";
import { after, before, test } from "node:test";
import { Agent } from "undici";
import { streamChatCompletion, type StreamOutcome } from "../../bench/lib/sse-client.ts";
import { SseParser } from "../../bench/lib/sse-parser.ts";
import { loadTestSplit } from "../../bench/lib/test-split.ts";
import { Rng } from "../../src/engine/rng.ts";
import type { EngineEvent } from "../../src/engine/types.ts";
import { startServer, waitFor, type TestServer } from "../helpers/server.ts";
import { report, scaled } from "./helpers/scale.ts";
import { ServerWatch } from "./helpers/server-watch.ts";

/** Disconnect storm: many concurrent streams, half of them cut at random points (before the
 * response, after k chunks by AbortController, after k chunks by destroying the socket). The
 * others complete with [DONE] and exactly the text of a reference greedy run of the same prompt;
 * afterwards no KV block is in use, nothing runs, and this process (which hosts the server) saw
 * no unhandled rejection. */

const STREAMS = scaled(40, 200);
const DISTINCT = scaled(20, 50);
const MODES = ["explicit", "latent", "none"] as const;
let s: TestServer;
let watch: ServerWatch;
const agent = new Agent({ connections: STREAMS + 8, keepAliveTimeout: 10_000 });
const finishes = new Map<string, number>();
/** Engine request id -> how and when (performance.now(), this process) it finished. */
const finishedAt = new Map<string, { reason: string; atMs: number }>();

before(async () => {
  s = await startServer({ kvCacheBlocks: 1024 });
  watch = new ServerWatch(s.app.server);
  s.engine.observe({
    onSubmit() {},
    onEvent: (e: EngineEvent, atMs: number) => {
      if (e.type !== "finish") return;
      finishes.set(e.reason, (finishes.get(e.reason) ?? 0) + 1);
      finishedAt.set(e.id, { reason: e.reason, atMs });
    },
    onStats() {},
  });
});
after(async () => {
  watch.stop();
  await agent.close();
  await s.close();
});

const programs = loadTestSplit().slice(0, DISTINCT);
const bodyOf = (i: number) => ({
  model: "nfcot-trace-small",
  messages: [{ role: "user", content: programs[i % DISTINCT]!.source }],
  temperature: 0,
  // Long enough that a random cut lands mid-stream; ignore_eos keeps the greedy text fixed.
  max_tokens: 64,
  ignore_eos: true,
  reasoning: { mode: MODES[i % MODES.length], latent_temperature: 0 },
});

interface Cut {
  cut: boolean;
  done: boolean;
  id: string | null;
  /** performance.now() when the client cut the stream. */
  cutAtMs: number | null;
}

/** A stream read with node:http whose socket is destroyed after `cutAfter` output chunks. */
function streamAndDestroy(url: string, body: Record<string, unknown>, cutAfter: number): Promise<Cut> {
  return new Promise((resolve) => {
    const parser = new SseParser();
    let chunks = 0;
    let done = false;
    let id: string | null = null;
    const req = httpRequest(
      `${url}/v1/chat/completions`,
      { method: "POST", headers: { "content-type": "application/json" } },
      (res) => {
        res.on("data", (d: Buffer) => {
          for (const data of parser.push(d)) {
            if (data === "[DONE]") done = true;
            else if (/"delta":\{"content":"[^"]|"thought":/.test(data)) chunks++;
            id ??= /"id":"([^"]+)"/.exec(data)?.[1] ?? null;
          }
          if (chunks >= cutAfter && !done) {
            const cutAtMs = performance.now();
            req.destroy();
            resolve({ cut: true, done, id, cutAtMs });
          }
        });
        res.on("end", () => resolve({ cut: false, done, id, cutAtMs: null }));
        res.on("error", () => resolve({ cut: true, done, id, cutAtMs: null }));
      },
    );
    req.on("error", () => resolve({ cut: true, done, id, cutAtMs: null }));
    req.end(JSON.stringify({ ...body, stream: true }));
  });
}

test("a storm of streams, half cut at random points: the rest complete correctly, KV blocks return to 0", {
  timeout: 180_000,
}, async (t) => {
  // Reference: each distinct request alone, greedy.
  const reference = new Map<number, StreamOutcome>();
  for (let i = 0; i < Math.min(STREAMS, DISTINCT * MODES.length); i++) {
    const key = i % (DISTINCT * MODES.length);
    const r = await streamChatCompletion(s.url, bodyOf(key), { dispatcher: agent });
    assert.ok(r.ok, `reference ${key}: ${r.error}`);
    reference.set(key, r);
  }
  const refOf = (i: number) => reference.get(i % (DISTINCT * MODES.length))!;

  const rng = Rng.fromSeed(20240601);
  const plan = Array.from({ length: STREAMS }, (_, i) => {
    if (rng.next() < 0.5) return { i, cut: null };
    const ref = refOf(i);
    const chunks = ref.textChunks + ref.thoughtChunks;
    const how = (["before the response", "abort after k chunks", "socket destroyed after k chunks"] as const)[
      Math.floor(rng.next() * 3)
    ]!;
    return {
      i,
      cut: { how, after: Math.floor(rng.next() * Math.max(1, chunks - 1)), delayMs: Math.floor(rng.next() * 5) },
    };
  });

  const t0 = performance.now();
  const outcomes = await Promise.all(
    plan.map(async ({ i, cut }) => {
      if (cut === null)
        return {
          i,
          cut,
          r: await streamChatCompletion(s.url, bodyOf(i), { dispatcher: agent }),
          id: null,
          cutAtMs: null,
          completedAnyway: false,
        };
      if (cut.how === "socket destroyed after k chunks") {
        const d = await streamAndDestroy(s.url, bodyOf(i), cut.after);
        return { i, cut, r: null, id: d.id, cutAtMs: d.cutAtMs, completedAnyway: !d.cut && d.done };
      }
      const ac = new AbortController();
      let cutAtMs: number | null = null;
      const abort = () => {
        cutAtMs ??= performance.now();
        ac.abort();
      };
      if (cut.how === "before the response") setTimeout(abort, cut.delayMs);
      const r = await streamChatCompletion(s.url, bodyOf(i), {
        dispatcher: agent,
        signal: ac.signal,
        onChunk: (n) => void (cut.how === "abort after k chunks" && n > cut.after && abort()),
      });
      return { i, cut, r, id: r.id, cutAtMs, completedAnyway: r.ok };
    }),
  );
  const seconds = (performance.now() - t0) / 1000;

  const kept = outcomes.filter((o) => o.cut === null);
  const cut = outcomes.filter((o) => o.cut !== null);
  const wrong = kept.filter(({ i, r }) => {
    const ref = refOf(i);
    return (
      !r!.ok ||
      r!.text !== ref.text ||
      r!.finishReason !== ref.finishReason ||
      r!.usage?.completion_tokens !== ref.usage?.completion_tokens
    );
  });
  await waitFor(
    () => {
      const st = s.engine.stats;
      return st !== null && st.kvBlocksUsed === 0 && st.running === 0 && st.waiting === 0 && s.engine.inFlight === 0;
    },
    30_000,
    "kvBlocksUsed 0 and nothing running after the storm",
  );
  // A stream cut while its sequence was still running must have been aborted in the engine. One
  // whose sequence had already finished (the server runs ahead of a slow reader) has nothing
  // left to abort, and one may finish on its own while the abort is on its way (socket close ->
  // HTTP thread -> worker, after the step in progress). A missed disconnect instead runs on
  // for the rest of its tokens. The engine id of a completion's single choice is `${id}-0`.
  const FINISH_SLACK_MS = 5; // the finish is timed where the HTTP thread receives it
  const ABORT_LATENCY_MS = 50;
  let aborted = 0;
  let finishedBefore = 0;
  let finishedRacing = 0;
  const notAborted: string[] = [];
  for (const o of cut) {
    const f = o.id ? finishedAt.get(`${o.id}-0`) : undefined;
    if (!o.id || o.cutAtMs === null || !f) continue; // cut before the server answered
    const after = f.atMs - o.cutAtMs;
    if (f.reason === "abort") aborted++;
    else if (after <= FINISH_SLACK_MS) finishedBefore++;
    else if (after <= ABORT_LATENCY_MS) finishedRacing++;
    else notAborted.push(`#${o.i} ${o.cut!.how}: finished ${f.reason} ${after.toFixed(1)} ms after the cut`);
  }
  const byHow = new Map<string, number>();
  for (const o of cut) byHow.set(o.cut!.how, (byHow.get(o.cut!.how) ?? 0) + 1);

  report(t, "disconnect storm", {
    streams: STREAMS,
    "cut on purpose": cut.length,
    "cut streams that had finished anyway": cut.filter((o) => o.completedAnyway).length,
    "kept streams": kept.length,
    "kept complete and equal to the reference": kept.length - wrong.length,
    "cut mid-stream": aborted + finishedBefore + finishedRacing + notAborted.length,
    "of which aborted in the engine": aborted,
    "had finished before the cut": finishedBefore,
    "finished within 50 ms of the cut": finishedRacing,
    "engine finishes abort": finishes.get("abort") ?? 0,
    "engine finishes stop": finishes.get("stop") ?? 0,
    "engine finishes length": finishes.get("length") ?? 0,
    "kv blocks used after": s.engine.stats!.kvBlocksUsed,
    "server 5xx": watch.serverErrors,
    "unhandled rejections": watch.rejections.length,
    seconds,
  });
  t.diagnostic(`cuts: ${[...byHow].map(([k, n]) => `${k} ${n}`).join(", ")}`);

  assert.ok(cut.length >= STREAMS * 0.35 && kept.length >= STREAMS * 0.35, "about half are cut");
  assert.deepEqual(
    wrong.map(
      ({ i, r }) =>
        `#${i}: ok ${r!.ok} ${r!.error ?? ""} text ${JSON.stringify(r!.text)} vs ${JSON.stringify(refOf(i).text)}`,
    ),
    [],
    "every stream that was not cut completes with [DONE] and the reference text",
  );
  assert.ok(aborted > 0, "the cuts reached the engine as aborts");
  assert.deepEqual(
    notAborted,
    [],
    "every stream cut while its sequence ran was aborted in the engine (or finished within 50 ms)",
  );
  assert.equal(s.engine.stats!.kvBlocksUsed, 0);
  assert.equal(watch.serverErrors, 0);
  assert.deepEqual(watch.rejections.map(String), [], "no unhandled rejections");
  assert.deepEqual(watch.exceptions.map(String), [], "no uncaught exceptions");
});
