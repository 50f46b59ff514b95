import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Agent } from "undici";
import { startServer, waitFor, type TestServer } from "../helpers/server.ts";
import { hostileCatalogue, knownGaps, type Hostile, type Reply, type Target } from "./helpers/hostile-requests.ts";
import { report, scaled } from "./helpers/scale.ts";
import { ServerWatch } from "./helpers/server-watch.ts";
import { VALID_CALLS } from "./helpers/valid-traffic.ts";

/** Bad input under load: hundreds of distinct malformed and hostile requests while valid traffic
 * of every route runs alongside. Every bad one gets a 4xx in the OpenAI error shape, the server
 * sends no 5xx at all, every valid one succeeds, and afterwards the process is healthy with no
 * KV blocks in use and no unhandled rejections. */

let s: TestServer;
let watch: ServerWatch;
let target: Target;
const agent = new Agent({ connections: 64, keepAliveTimeout: 10_000 });

before(async () => {
  s = await startServer();
  watch = new ServerWatch(s.app.server);
  const info = s.engine.info;
  target = {
    url: s.url,
    port: Number(new URL(s.url).port),
    dispatcher: agent,
    model: s.app.modelName,
    numThoughts: info.numThoughts,
    thoughtDim: info.thoughtDim,
    maxContext: info.maxContext,
    maxN: s.config.maxN,
    maxQueue: s.config.maxQueue,
    bodyLimit: s.config.bodyLimit,
  };
});
after(async () => {
  watch.stop();
  await agent.close();
  await s.close();
});

/** The OpenAI error body: {error: {message, type, param, code}}; null when it is one. */
function shapeProblem(body: string): string | null {
  let parsed: any;
  try {
    parsed = JSON.parse(body);
  } catch {
    return `not JSON: ${body.slice(0, 120)}`;
  }
  const e = parsed?.error;
  if (typeof e !== "object" || e === null) return `no error object: ${body.slice(0, 120)}`;
  if (typeof e.message !== "string" || e.message === "") return "error.message is not a non-empty string";
  if (typeof e.type !== "string") return "error.type is not a string";
  if (!(e.param === null || typeof e.param === "string")) return "error.param is neither null nor a string";
  if (typeof e.code !== "string") return "error.code is not a string";
  return null;
}

async function runAll(list: Hostile[], concurrency: number): Promise<{ h: Hostile; r: Reply }[]> {
  const queue = list.map((h, i) => ({ h, i }));
  const out: { h: Hostile; r: Reply }[] = new Array(list.length);
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let next = queue.shift(); next; next = queue.shift()) {
        out[next.i] = {
          h: next.h,
          r: await next.h.send(target).catch((e: Error): Reply => ({ status: 0, body: "", error: e.message })),
        };
      }
    }),
  );
  return out;
}

test("hostile requests during valid traffic: every bad one 4xx in the OpenAI shape, no 5xx, every valid one succeeds", {
  timeout: 240_000,
}, async (t) => {
  const hostile = hostileCatalogue({ slowClients: scaled(6, 18) });
  const names = new Set(hostile.map((h) => `${h.kind}: ${h.name}`));
  assert.equal(names.size, hostile.length, "every hostile request is a distinct case");
  assert.ok(hostile.length >= 200, `at least 200 hostile requests, got ${hostile.length}`);

  // Valid traffic runs the whole time, every kind of call in turn, and at least one full round.
  let hostileDone = false;
  const valid: { name: string; problem: string | null }[] = [];
  const workers = Array.from({ length: scaled(3, 4) }, async (_, w) => {
    for (let k = w; !hostileDone || k < VALID_CALLS.length; k++) {
      const call = VALID_CALLS[k % VALID_CALLS.length]!;
      valid.push({ name: call.name, problem: await call.run(target).catch((e: Error) => `threw ${e.message}`) });
    }
  });
  const t0 = performance.now();
  const results = await runAll(hostile, scaled(16, 32));
  hostileDone = true;
  await Promise.all(workers);
  const seconds = (performance.now() - t0) / 1000;

  const wrong = results.filter(({ r }) => !(r.status >= 400 && r.status < 500) || shapeProblem(r.body) !== null);
  const byKind = new Map<string, number>();
  for (const { h } of results) byKind.set(h.kind, (byKind.get(h.kind) ?? 0) + 1);
  const statuses = new Map<number, number>();
  for (const { r } of results) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
  const validFailed = valid.filter((v) => v.problem !== null);
  report(t, "bad input", {
    hostile: hostile.length,
    "answered 4xx in the OpenAI shape": results.length - wrong.length,
    "server 5xx": watch.serverErrors,
    "valid requests": valid.length,
    "valid kinds": new Set(valid.map((v) => v.name)).size,
    "valid failed": validFailed.length,
    seconds,
  });
  t.diagnostic(`hostile by kind: ${[...byKind].map(([k, n]) => `${k} ${n}`).join(", ")}`);
  t.diagnostic(
    `hostile by status: ${[...statuses]
      .sort((a, b) => a[0] - b[0])
      .map(([k, n]) => `${k} x${n}`)
      .join(", ")}`,
  );

  assert.deepEqual(
    wrong.map(({ h, r }) => `${h.kind}: ${h.name} -> ${r.status} ${r.error ?? ""} ${shapeProblem(r.body) ?? ""}`),
    [],
    "every hostile request gets a 4xx in the OpenAI error shape",
  );
  assert.equal(watch.serverErrors, 0, `no 5xx from the server: ${JSON.stringify([...watch.statuses])}`);
  assert.deepEqual(validFailed.slice(0, 10), [], "every valid request succeeds");
  assert.equal(new Set(valid.map((v) => v.name)).size, VALID_CALLS.length, "every kind of valid call ran");
});

test("afterwards: healthy, no KV blocks in use, nothing in flight, no unhandled rejections", async (t) => {
  const health = await fetch(`${s.url}/health`);
  assert.equal(health.status, 200);
  assert.equal(s.engine.alive, true);
  assert.equal(await VALID_CALLS[0]!.run(target), null, "a valid request still succeeds");
  await waitFor(
    () => {
      const st = s.engine.stats;
      return st !== null && st.kvBlocksUsed === 0 && st.running === 0 && st.waiting === 0 && s.engine.inFlight === 0;
    },
    15_000,
    "kvBlocksUsed 0 and nothing running",
  );
  report(t, "bad input, after", {
    "kv blocks used": s.engine.stats!.kvBlocksUsed,
    "in flight": s.engine.inFlight,
    "unhandled rejections": watch.rejections.length,
    "uncaught exceptions": watch.exceptions.length,
  });
  assert.deepEqual(watch.rejections.map(String), []);
  assert.deepEqual(watch.exceptions.map(String), []);
});

// Broken HTTP framing never reaches a route (src/api/client-errors.ts answers it on the socket),
// and encoded bodies are refused with 415 rather than misread.
test("broken HTTP framing and undecoded Content-Encoding get a 4xx in the OpenAI shape", async (t) => {
  const results = await runAll(knownGaps(), 1);
  const fourxx = results.filter(({ r }) => r.status >= 400 && r.status < 500).length;
  const shaped = results.filter(({ r }) => shapeProblem(r.body) === null).length;
  report(t, "known gaps", { tried: results.length, "4xx": fourxx, "OpenAI shape": shaped });
  assert.equal(fourxx, results.length, "4xx for every one");
  assert.equal(shaped, results.length, results.map(({ h, r }) => `${h.name}: ${r.status} ${r.body}`).join("\n"));
});
