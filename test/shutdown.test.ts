import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { after, test } from "node:test";
import { postJson } from "./helpers/sse.ts";
import { freePort } from "../bench/lib/server-process.ts";

/** The real server process (src/server.ts): SIGTERM while a stream is in flight. Readiness turns
 * 503, new requests are refused, the stream runs to its end with [DONE], the process exits 0. */

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const MODEL = "nfcot-trace-small";
let child: ChildProcess | null = null;
let output = "";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

after(() => {
  if (child && child.exitCode === null) child.kill("SIGKILL");
});

/** The server process on a free port, once /ready says 200. */
async function startServerProcess(
  env: Record<string, string>,
): Promise<{ url: string; exited: Promise<number | null> }> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  output = "";
  child = spawn(process.execPath, ["--import", "tsx", "src/server.ts"], {
    cwd: ROOT,
    env: {
      ...process.env,
      HOST: "127.0.0.1",
      PORT: String(port),
      NFCOT_KV_CACHE_BLOCKS: "64",
      NFCOT_THREADS: "1",
      NFCOT_LOG_LEVEL: "info",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const proc = child;
  proc.stdout!.on("data", (d) => (output += d));
  proc.stderr!.on("data", (d) => (output += d));
  const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
  // Loading (503 or not yet listening), then ready.
  const end = Date.now() + 60_000;
  for (;;) {
    assert.equal(proc.exitCode, null, `the server exited while starting:\n${output}`);
    const status = await fetch(`${url}/ready`).then(
      (r) => r.status,
      () => 0,
    );
    if (status === 200) break;
    assert.ok(status === 0 || status === 503, `/ready answered ${status} while starting`);
    assert.ok(Date.now() < end, `not ready within 60 s:\n${output}`);
    await sleep(100);
  }
  return { url, exited };
}

/** A long stream (ignore_eos: exactly max_tokens tokens); returns once its first chunk is read. */
async function openStream(url: string, maxTokens: number) {
  const res = await postJson(`${url}/v1/chat/completions`, {
    model: MODEL,
    messages: [{ role: "user", content: "x = 3\nprint(x + 4)" }],
    reasoning: { mode: "none" },
    stream: true,
    stream_options: { include_usage: true },
    max_tokens: maxTokens,
    ignore_eos: true,
  });
  assert.equal(res.status, 200);
  const reader = res.body!.getReader();
  const first = await reader.read();
  assert.ok(!first.done);
  let text = new TextDecoder().decode(first.value);
  /** The rest of the stream: its chunks, whether [DONE] ended it, and the finish reason. */
  const rest = async () => {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    const blocks = text.split("\n\n").filter((b) => b.trim());
    const done = blocks.at(-1) === "data: [DONE]";
    const chunks = blocks.filter((b) => b !== "data: [DONE]").map((b) => JSON.parse(b.slice("data: ".length)));
    const finish = chunks.find((c) => c.choices?.[0]?.finish_reason)?.choices[0].finish_reason as string | undefined;
    return { chunks, done, finish };
  };
  return { rest };
}

/** A refused connection (the listener is closed) or the 503 of a draining server. */
async function refusedOr503(res: Promise<Response>, code: string): Promise<string> {
  try {
    const r = await res;
    assert.equal(r.status, 503);
    assert.ok(r.headers.get("retry-after"), "Retry-After on the 503");
    const { error } = (await r.json()) as { error: { code: string } };
    assert.equal(error.code, code);
    return "503";
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    assert.match(String((e as { cause?: { code?: string } }).cause?.code), /ECONNREFUSED|ECONNRESET/);
    return "refused";
  }
}

test("SIGTERM drains: /ready 503, new requests refused, the in-flight stream ends with [DONE], exit code 0", {
  timeout: 90_000,
}, async (t) => {
  const { url, exited } = await startServerProcess({ NFCOT_DRAIN_TIMEOUT_MS: "30000" });
  // Read slowly: the stream is still open at SIGTERM.
  const stream = await openStream(url, 150);

  child!.kill("SIGTERM");
  // Readiness turns 503 (or, once the listener is closed, connections are refused) ...
  let ready = "";
  for (let i = 0; i < 100 && ready === ""; i++) {
    const r = await fetch(`${url}/ready`).catch((e: Error) => e);
    if (r instanceof Error) ready = await refusedOr503(Promise.reject(r), "shutting_down");
    else if (r.status === 503) ready = await refusedOr503(Promise.resolve(r), "shutting_down");
    else await sleep(10); // the signal may not have arrived yet
  }
  assert.ok(ready, "/ready never turned 503 after SIGTERM");
  // ... and new work is refused, while /health still says the process is alive (if it answers).
  const refused = await refusedOr503(
    postJson(`${url}/v1/chat/completions`, { model: MODEL, messages: [{ role: "user", content: "y = 1" }] }),
    "shutting_down",
  );
  const health = await fetch(`${url}/health`).then(
    (r) => r.status,
    () => "refused",
  );
  assert.ok(health === 200 || health === "refused", `/health while draining: ${health}`);
  t.diagnostic(`while draining: /ready ${ready}, new request ${refused}, /health ${health}`);

  // The stream in flight runs to its natural end.
  const { chunks, done, finish } = await stream.rest();
  assert.ok(done, "the stream ended with [DONE]");
  assert.equal(finish, "length", "finished on its own, not aborted");
  assert.equal(chunks.at(-1).usage.completion_tokens, 150);

  assert.equal(await exited, 0, output);
  assert.match(output, /"msg":"draining"/);
  assert.match(output, /"aborted":0,"msg":"stopped"/);
});

test("at the drain deadline the requests still running are aborted: their streams end properly, exit code 0", {
  timeout: 90_000,
}, async () => {
  const { url, exited } = await startServerProcess({ NFCOT_DRAIN_TIMEOUT_MS: "0" });
  // Longer than the engine can finish before the deadline (0 ms): it is aborted mid-way.
  const stream = await openStream(url, 200);
  child!.kill("SIGTERM");
  const { chunks, done, finish } = await stream.rest();
  assert.ok(done, "the stream ended with [DONE]");
  assert.equal(finish, "abort");
  assert.ok(chunks.at(-1).usage.completion_tokens < 200);
  assert.equal(await exited, 0, output);
  assert.match(output, /drain deadline reached/);
  assert.match(output, /"aborted":1,"msg":"stopped"/);
});
