import { Agent, request } from "undici";
import { isPositiveInt, numberArg, parseCli } from "./lib/cli.ts";
import { startServerProcess, type ServerProcess } from "./lib/server-process.ts";
import { percentile } from "./lib/stats.ts";
import { gridTable } from "./lib/table.ts";

const USAGE = `Event-loop attack: what big bodies sent by many clients do to everyone else. Two servers
(child processes, one after the other, both with an API key) side by side:
  unbounded  /tokenize open (--public-tokenizer) and no prompt bound (--max-prompt-chars 2 MiB):
             what the server did before prompts were bounded and /tokenize was protected
  default    the shipped defaults
Each runs a quiet phase, then an attack phase: --attackers clients send ~1 MB bodies back to
back, half to /tokenize without a key, half to /v1/chat/completions with the key. Throughout,
one authenticated client streams short chat completions one after another, and /health is
polled. Reported: the server's event-loop delay (from its /metrics, reset at the phase start),
/health latency, the stream's end-to-end latency, and attack requests answered per second.

  npm run bench:eventloop -- [--attackers 16] [--seconds 10] [--quiet-seconds 5]`;

const args = parseCli(
  {
    attackers: { type: "string", default: "16" },
    seconds: { type: "string", default: "10" },
    "quiet-seconds": { type: "string", default: "5" },
  },
  USAGE,
);
const ATTACKERS = numberArg(USAGE, "attackers", args.attackers, isPositiveInt)!;
const ATTACK_S = numberArg(USAGE, "seconds", args.seconds, (x) => x > 0)!;
const QUIET_S = numberArg(USAGE, "quiet-seconds", args["quiet-seconds"], (x) => x > 0)!;

const KEY = "sk-bench-eventloop";
const MODEL = "nfcot-trace-small";
const BODY_LIMIT = 1024 * 1024;
// Just under the body limit once wrapped in JSON: the tokenizer sees ~1 MB of program text.
const BIG = "x = 1 ; ".repeat(Math.floor((BODY_LIMIT - 200) / 8));
const TOKENIZE_BODY = JSON.stringify({ prompt: BIG });
const CHAT_BIG_BODY = JSON.stringify({ model: MODEL, messages: [{ role: "user", content: BIG }], max_tokens: 1 });
const VICTIM_BODY = JSON.stringify({
  model: MODEL,
  messages: [{ role: "user", content: "a = 3\nb = a + 4\nprint(b)" }],
  max_tokens: 8,
  stream: true,
  seed: 1,
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface PhaseResult {
  loop: { p50: number; p99: number; max: number };
  health: number[];
  stream: number[];
  attacks: Map<number, number>;
  seconds: number;
}

/** Event-loop delay as the server's prom-client reports it; reading it also resets it. */
async function eventLoop(url: string): Promise<{ p50: number; p99: number; max: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const get = (name: string) =>
    Number(new RegExp(`^nfcot_nodejs_eventloop_lag_${name}_seconds\\{[^}]*\\} (\\S+)$`, "m").exec(text)?.[1] ?? NaN) *
    1000;
  return { p50: get("p50"), p99: get("p99"), max: get("max") };
}

async function phase(server: ServerProcess, attackers: number, seconds: number): Promise<PhaseResult> {
  const agent = new Agent({ connections: attackers + 4, pipelining: 1 });
  const end = Date.now() + seconds * 1000;
  const attacks = new Map<number, number>();
  const health: number[] = [];
  const stream: number[] = [];
  await eventLoop(server.url); // reset the server's histogram

  const attacker = async (i: number) => {
    const toTokenize = i % 2 === 0;
    while (Date.now() < end) {
      const r = await request(`${server.url}${toTokenize ? "/tokenize" : "/v1/chat/completions"}`, {
        method: "POST",
        dispatcher: agent,
        headers: { "content-type": "application/json", ...(toTokenize ? {} : { authorization: `Bearer ${KEY}` }) },
        body: toTokenize ? TOKENIZE_BODY : CHAT_BIG_BODY,
      }).then(
        async (res) => {
          await res.body.dump();
          return res.statusCode;
        },
        () => 0,
      );
      attacks.set(r, (attacks.get(r) ?? 0) + 1);
    }
  };
  const prober = async () => {
    while (Date.now() < end) {
      const t0 = performance.now();
      const res = await request(`${server.url}/health`, { dispatcher: agent });
      await res.body.dump();
      health.push(performance.now() - t0);
      await sleep(100);
    }
  };
  const victim = async () => {
    while (Date.now() < end) {
      const t0 = performance.now();
      const res = await request(`${server.url}/v1/chat/completions`, {
        method: "POST",
        dispatcher: agent,
        headers: { "content-type": "application/json", authorization: `Bearer ${KEY}` },
        body: VICTIM_BODY,
      });
      const text = await res.body.text();
      if (res.statusCode !== 200 || !text.includes("[DONE]"))
        throw new Error(`the victim stream failed: ${res.statusCode} ${text.slice(0, 200)}`);
      stream.push(performance.now() - t0);
    }
  };
  const t0 = Date.now();
  await Promise.all([...Array.from({ length: attackers }, (_, i) => attacker(i)), prober(), victim()]);
  const loop = await eventLoop(server.url);
  await agent.close();
  return { loop, health, stream, attacks, seconds: (Date.now() - t0) / 1000 };
}

const CONFIGS: [string, Record<string, string>][] = [
  ["unbounded", { NFCOT_PUBLIC_TOKENIZER: "1", NFCOT_MAX_PROMPT_CHARS: String(2 * BODY_LIMIT) }],
  ["default", {}],
];

const rows: (string | number)[][] = [];
const p50 = (xs: number[]) => percentile(xs, 50);
const p99 = (xs: number[]) => percentile(xs, 99);
const summary: Record<string, Record<string, PhaseResult>> = {};
for (const [name, env] of CONFIGS) {
  process.stderr.write(`starting the ${name} server...\n`);
  const server = await startServerProcess({
    NFCOT_API_KEYS: KEY,
    NFCOT_THREADS: "1",
    NFCOT_BODY_LIMIT: String(BODY_LIMIT),
    ...env,
  });
  try {
    summary[name] = {};
    for (const [label, n, s] of [
      ["quiet", 0, QUIET_S],
      [`${ATTACKERS} attackers`, ATTACKERS, ATTACK_S],
    ] as const) {
      process.stderr.write(`  ${label} for ${s} s\n`);
      const r = await phase(server, n, s);
      summary[name]![label] = r;
      const answered = [...r.attacks].map(([status, count]) => `${status}:${count}`).join(" ") || "-";
      rows.push([
        name,
        label,
        r.loop.p50,
        r.loop.p99,
        r.loop.max,
        p50(r.health),
        p99(r.health),
        p50(r.stream),
        p99(r.stream),
        r.stream.length,
        answered,
      ]);
    }
  } finally {
    await server.stop();
  }
}

console.log(
  gridTable(
    [
      "server",
      "phase",
      "loop p50 ms",
      "loop p99 ms",
      "loop max ms",
      "/health p50 ms",
      "/health p99 ms",
      "stream p50 ms",
      "stream p99 ms",
      "streams",
      "attack answers (status:count)",
    ],
    rows,
  ),
);
const ratio = (name: string, f: (r: PhaseResult) => number) =>
  f(summary[name]![`${ATTACKERS} attackers`]!) / f(summary[name]!["quiet"]!);
console.log("\nunder attack / quiet, side by side:");
for (const [name] of CONFIGS) {
  console.log(
    `  ${name.padEnd(10)} stream p50 x${ratio(name, (r) => p50(r.stream)).toFixed(2)}, /health p50 x${ratio(name, (r) => p50(r.health)).toFixed(2)}, ` +
      `loop p99 x${ratio(name, (r) => r.loop.p99).toFixed(2)}`,
  );
}
