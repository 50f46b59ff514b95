import assert from "node:assert/strict";
import { test } from "node:test";
import { startServer, waitFor } from "./helpers/server.ts";
import { postJson } from "./helpers/sse.ts";

/** Readiness means "can serve", not "is idle": the probe generation is a priority request that
 * runs in the engine's next step, ahead of a backlog that would hold an FCFS probe for many
 * seconds. One running slot and 40 long generations make that backlog. */

const MODEL = "nfcot-trace-small";
const TIMEOUT_MS = 3000;

test("GET /ready stays 200 within its timeout behind a long backlog, while the engine works through it", {
  timeout: 120_000,
}, async () => {
  const s = await startServer({ maxNumSeqs: 1, readinessTimeoutMs: TIMEOUT_MS });
  const stop = new AbortController();
  try {
    const backlog = Array.from({ length: 40 }, (_, i) =>
      postJson(
        `${s.url}/v1/chat/completions`,
        {
          model: MODEL,
          messages: [{ role: "user", content: `print(${i})` }],
          max_tokens: 240,
          ignore_eos: true,
          temperature: 0,
          stream: true,
          reasoning: { mode: "none" },
        },
        { signal: stop.signal },
      )
        .then((r) => r.text())
        .catch(() => null),
    );
    await waitFor(() => (s.engine.stats?.waiting ?? 0) >= 30, 20_000, "a backlog of waiting requests");
    const steps: number[] = [];
    for (let i = 0; i < 3; i++) {
      steps.push(s.engine.stats!.steps);
      const res = await fetch(`${s.url}/ready`);
      const body = await res.json();
      assert.equal(res.status, 200, JSON.stringify(body));
      assert.equal(body.status, "ready");
      assert.ok(body.probe_ms < TIMEOUT_MS, `probe took ${body.probe_ms} ms`);
      await new Promise((r) => setTimeout(r, 1100)); // past the probe's 1 s cache: a fresh probe each time
    }
    assert.ok(steps[2]! > steps[0]!, "the engine was working meanwhile");
    assert.ok(
      s.engine.stats!.waiting >= 5,
      `the backlog is still there (${s.engine.stats!.waiting} waiting): the server was busy, not idle`,
    );

    // Draining still turns readiness off at once, backlog or not.
    s.app.serveState.draining = true;
    assert.equal((await fetch(`${s.url}/ready`)).status, 503);
    s.app.serveState.draining = false;

    stop.abort();
    await Promise.all(backlog);
    await waitFor(
      () => s.engine.inFlight === 0 && s.engine.stats!.kvBlocksUsed === 0,
      10_000,
      "the backlog aborted, every block free",
    );
  } finally {
    stop.abort();
    await s.close();
  }
});
