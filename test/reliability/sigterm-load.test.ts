import assert from "node:assert/strict";
import { after, test } from "node:test";
import { Agent } from "undici";
import { startServerProcess, type ServerProcess } from "../../bench/lib/server-process.ts";
import { streamChatCompletion, type StreamOutcome } from "../../bench/lib/sse-client.ts";
import { report, scaled } from "./helpers/scale.ts";

/** SIGTERM under load: the real server process with many streams in flight. After the signal new
 * requests are refused (503 or connection refused), every stream in flight runs to its end with
 * [DONE] and its full length, and the process exits with code 0 having aborted nothing. */

const STREAMS = scaled(8, 32);
const MAX_TOKENS = 200;
const MODES = ["none", "explicit", "latent"] as const;
let server: ServerProcess | null = null;

after(async () => {
  if (server && server.child.exitCode === null) server.child.kill("SIGKILL");
});

test(`SIGTERM with ${STREAMS} streams in flight: all finish with [DONE], exit code 0`, {
  timeout: 180_000,
}, async (t) => {
  server = await startServerProcess({
    NFCOT_DRAIN_TIMEOUT_MS: "120000",
    NFCOT_THREADS: "1",
    NFCOT_KV_CACHE_BLOCKS: "512",
    NFCOT_LOG_LEVEL: "info",
  });
  const s = server;
  const agent = new Agent({ connections: STREAMS + 4 });
  try {
    // Every stream has produced output (it is running in the engine) before the signal.
    let started = 0;
    let allStarted!: () => void;
    const running = new Promise<void>((r) => (allStarted = r));
    const streams: Promise<StreamOutcome>[] = Array.from({ length: STREAMS }, (_, i) => {
      let counted = false;
      return streamChatCompletion(
        s.url,
        {
          model: "nfcot-trace-small",
          messages: [{ role: "user", content: `x = ${1 + (i % 9)}\nprint(x + 4)` }],
          max_tokens: MAX_TOKENS,
          ignore_eos: true,
          seed: i,
          reasoning: { mode: MODES[i % MODES.length] },
        },
        {
          dispatcher: agent,
          onChunk: () => {
            if (counted) return;
            counted = true;
            if (++started === STREAMS) allStarted();
          },
        },
      );
    });
    await Promise.race([
      running,
      Promise.all(streams).then(() => assert.fail("the streams ended before SIGTERM could be sent")),
    ]);
    const tSignal = performance.now();
    s.child.kill("SIGTERM");

    // New requests after the signal (once it has arrived) are refused.
    await new Promise((r) => setTimeout(r, 100));
    let refused = 0;
    let accepted = 0;
    const probes = scaled(5, 20);
    for (let i = 0; i < probes; i++) {
      const r = await fetch(`${s.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: "nfcot-trace-small",
          messages: [{ role: "user", content: "y = 1\nprint(y)" }],
          max_tokens: 8,
        }),
      }).then(
        (res) => res.status,
        () => 0,
      );
      if (r === 503 || r === 0) refused++;
      else accepted++;
    }

    const results = await Promise.all(streams);
    const drainS = (performance.now() - tSignal) / 1000;
    const code = await s.exited;
    const inFlightAtSignal = Number(/"inFlight":(\d+)[^\n]*"msg":"draining"/.exec(s.output())?.[1] ?? -1);
    const aborted = Number(/"aborted":(\d+)[^\n]*"msg":"stopped"/.exec(s.output())?.[1] ?? -1);
    const complete = results.filter(
      (r) => r.ok && ["stop", "length"].includes(r.finishReason ?? "") && r.usage !== null,
    );
    // Thoughts and trace tokens count inside max_tokens, as OpenAI counts reasoning.
    const fullLength = results.filter((r) => r.usage && r.usage.completion_tokens === MAX_TOKENS);
    report(t, "SIGTERM under load", {
      streams: STREAMS,
      "in flight at SIGTERM (server log)": inFlightAtSignal,
      "new requests after SIGTERM": probes,
      "refused (503 or connection refused)": refused,
      "completed with [DONE] and stop/length": complete.length,
      "full length": fullLength.length,
      "aborted by the drain": aborted,
      "drain s": drainS,
      "exit code": code ?? "signal",
    });
    assert.equal(accepted, 0, "no new request is accepted while draining");
    assert.deepEqual(
      results.filter((r) => !complete.includes(r)).map((r) => `${r.error} ${r.finishReason}`),
      [],
      "every in-flight stream finishes properly",
    );
    assert.equal(fullLength.length, STREAMS, "every stream ran to its full length (none cut short)");
    assert.ok(inFlightAtSignal > 0, "streams were in flight when the signal came");
    assert.equal(aborted, 0, "the drain aborted nothing");
    assert.equal(code, 0, s.output().slice(-2000));
  } finally {
    await agent.close();
  }
});
