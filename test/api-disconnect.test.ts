import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { EngineEvent } from "../src/engine/types.ts";
import { startServer, waitFor, type TestServer } from "./helpers/server.ts";
import { postJson } from "./helpers/sse.ts";

/** A client that goes away aborts its sequences, and the engine frees their KV blocks. */

const MODEL = "nfcot-trace-small";
const MAX = 200; // long enough that only an abort ends the request early (ignore_eos)
let s: TestServer;
const events: EngineEvent[] = [];

before(async () => {
  s = await startServer();
  s.engine.observe({ onSubmit() {}, onEvent: (e) => void events.push(e), onStats() {} });
});
after(() => s.close());

const body = (stream: boolean) => ({
  model: MODEL,
  messages: [{ role: "user", content: "a = 1\nprint(a)" }],
  max_tokens: MAX,
  ignore_eos: true,
  seed: 1,
  stream,
});

async function assertAbortedAndFreed(idPrefix: string): Promise<void> {
  const isMine = (e: EngineEvent) => e.id.startsWith(idPrefix);
  await waitFor(() => events.some((e) => isMine(e) && e.type === "finish"), 10_000, "the finish event");
  const finish = events.find((e) => isMine(e) && e.type === "finish");
  assert.equal(finish?.type === "finish" && finish.reason, "abort");
  assert.ok(finish?.type === "finish" && finish.completionTokens < MAX);
  await waitFor(
    () => {
      const st = s.engine.stats;
      return st !== null && st.running === 0 && st.waiting === 0 && st.kvBlocksUsed === 0;
    },
    10_000,
    "running 0 and kvBlocksUsed 0",
  );
  assert.equal(s.engine.inFlight, 0);
}

test("disconnecting mid-stream aborts the sequence and frees its blocks", async () => {
  const ac = new AbortController();
  const res = await postJson(`${s.url}/v1/chat/completions`, body(true), { signal: ac.signal });
  assert.equal(res.status, 200);
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let text = "";
  while (!text.includes('"delta":{"content":')) {
    const { value, done } = await reader.read();
    assert.ok(!done, "the stream ended before any content");
    text += dec.decode(value);
  }
  const id = /"id":"(chatcmpl-[^"]+)"/.exec(text)![1]!;
  ac.abort();
  await assertAbortedAndFreed(id);
});

test("disconnecting while waiting for a whole response aborts it too", async () => {
  const ac = new AbortController();
  const pending = postJson(`${s.url}/v1/chat/completions`, body(false), { signal: ac.signal }).catch((e: Error) => e);
  await waitFor(
    () =>
      events.some(
        (e) =>
          e.type === "token" &&
          e.id.startsWith("chatcmpl-") &&
          !events.some((f) => f.type === "finish" && f.id === e.id),
      ),
    10_000,
    "a token",
  );
  const running = events.find((e) => e.type === "token" && !events.some((f) => f.type === "finish" && f.id === e.id))!;
  ac.abort();
  assert.ok((await pending) instanceof Error);
  await assertAbortedAndFreed(running.id);
});
