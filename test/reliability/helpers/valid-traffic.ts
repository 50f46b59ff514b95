import { streamChatCompletion } from "../../../bench/lib/sse-client.ts";
import { sendBody, type Target } from "./hostile-requests.ts";

/** Valid requests of every route and shape (and some that look hostile but are valid: huge
 * seeds, odd characters, unknown fields), each with a check of its answer. The bad-input suite
 * runs them in a loop while the hostile ones are being sent: every one must succeed. */

export interface ValidCall {
  name: string;
  run: (t: Target) => Promise<string | null>; // null: it succeeded; else what was wrong
}

const PROGRAM = "a = 5\nb = a * 3\nc = b - 4\nprint(c)";
const msgs = [{ role: "user", content: PROGRAM }];

async function json(
  t: Target,
  path: string,
  body: unknown,
  method: "GET" | "POST" = "POST",
): Promise<{ status: number; body: any; text: string }> {
  const r = await sendBody(
    t,
    path,
    method === "GET" ? "" : JSON.stringify(body),
    method === "GET" ? {} : { "content-type": "application/json" },
    method,
  );
  if (r.error) return { status: 0, body: null, text: r.error };
  let parsed: unknown = null;
  try {
    parsed = JSON.parse(r.body);
  } catch {
    // /metrics is text
  }
  return { status: r.status, body: parsed, text: r.body };
}

function chatCheck(r: { status: number; body: any; text: string }, choices = 1): string | null {
  if (r.status !== 200) return `HTTP ${r.status}: ${r.text.slice(0, 200)}`;
  if (r.body?.choices?.length !== choices) return `expected ${choices} choices: ${r.text.slice(0, 200)}`;
  for (const c of r.body.choices) {
    if (typeof (c.message?.content ?? c.text) !== "string") return "no text";
    if (!["stop", "length"].includes(c.finish_reason)) return `finish_reason ${c.finish_reason}`;
  }
  return null;
}

const chat = (name: string, extra: Record<string, unknown>, choices = 1): ValidCall => ({
  name,
  run: async (t) =>
    chatCheck(
      await json(t, "/v1/chat/completions", {
        model: t.model,
        messages: msgs,
        max_tokens: 24,
        temperature: 0,
        ...extra,
      }),
      choices,
    ),
});

const zeros = (t: Target) => Array.from({ length: t.numThoughts }, () => Array<number>(t.thoughtDim).fill(0));

export const VALID_CALLS: ValidCall[] = [
  chat("chat none", { reasoning: { mode: "none" } }),
  chat("chat explicit", { reasoning: { mode: "explicit" } }),
  chat("chat latent T_z 0", { reasoning: { mode: "latent", latent_temperature: 0 } }),
  {
    name: "chat latent with thoughts returned",
    run: async (t) => {
      const r = await json(t, "/v1/chat/completions", {
        model: t.model,
        messages: msgs,
        max_tokens: 8,
        seed: 3,
        reasoning: { mode: "latent", return_thoughts: true },
      });
      const bad = chatCheck(r);
      if (bad) return bad;
      const th = r.body.choices[0].thoughts;
      return th?.count === t.numThoughts && th.vectors?.length === t.numThoughts
        ? null
        : `thoughts ${JSON.stringify(th).slice(0, 200)}`;
    },
  },
  {
    name: "chat stream",
    run: async (t) => {
      const r = await streamChatCompletion(
        t.url,
        { model: t.model, messages: msgs, max_tokens: 16, temperature: 0 },
        { dispatcher: t.dispatcher },
      );
      if (!r.ok) return r.error;
      return r.usage && ["stop", "length"].includes(r.finishReason ?? "")
        ? null
        : `finish ${r.finishReason}, usage ${JSON.stringify(r.usage)}`;
    },
  },
  chat("chat n 2 sampled", { n: 2, temperature: 0.8, seed: 11 }, 2),
  chat("edge: seed 2^53 - 1", { seed: Number.MAX_SAFE_INTEGER, temperature: 1 }),
  chat("edge: seed -(2^53 - 1)", { seed: -Number.MAX_SAFE_INTEGER, temperature: 1 }),
  chat("edge: top_k 1e9", { top_k: 1_000_000_000, temperature: 1, seed: 1 }),
  chat("edge: max_tokens K + 1 (the thoughts and one answer token)", { max_tokens: 7 }),
  chat("edge: max_tokens 1 without reasoning", { max_tokens: 1, reasoning: { mode: "none" } }),
  chat("edge: stop strings 10k characters", { stop: ["x".repeat(10_000), "\u2603"] }),
  chat("edge: stop_token_ids beyond the vocabulary", { stop_token_ids: [1_000_000] }),
  {
    name: "edge: odd characters and an empty turn",
    run: async (t) =>
      chatCheck(
        await json(t, "/v1/chat/completions", {
          model: t.model,
          max_tokens: 10,
          messages: [
            { role: "user", content: "\u0000\u200b\ud83d\ude00 \ud800" },
            { role: "assistant", content: "" },
            { role: "user", content: "" },
          ],
        }),
      ),
  },
  {
    name: "edge: unknown field nested 1000 deep",
    run: async (t) => {
      const body = `{"model":${JSON.stringify(t.model)},"messages":${JSON.stringify(msgs)},"max_tokens":8,"x_extension":${"[".repeat(1000)}${"]".repeat(1000)}}`;
      const r = await sendBody(t, "/v1/chat/completions", body);
      return r.status === 200 ? null : `HTTP ${r.status} ${r.error ?? r.body.slice(0, 200)}`;
    },
  },
  {
    name: "completions",
    run: async (t) =>
      chatCheck(
        await json(t, "/v1/completions", { model: t.model, prompt: ["a = 1", "b = 2"], max_tokens: 4, temperature: 0 }),
        2,
      ),
  },
  {
    name: "completions of token ids, echoed with logprobs",
    run: async (t) =>
      chatCheck(
        await json(t, "/v1/completions", {
          model: t.model,
          prompt: [10, 11, 12],
          max_tokens: 3,
          echo: true,
          logprobs: 2,
        }),
      ),
  },
  {
    name: "tokenize and detokenize",
    run: async (t) => {
      const a = await json(t, "/tokenize", { model: t.model, messages: msgs, reasoning_mode: "explicit" });
      if (a.status !== 200 || !(a.body.count > 0)) return `tokenize HTTP ${a.status}`;
      const b = await json(t, "/detokenize", { model: t.model, tokens: a.body.tokens });
      return b.status === 200 && typeof b.body.prompt === "string" ? null : `detokenize HTTP ${b.status}`;
    },
  },
  {
    name: "latent logprobs",
    run: async (t) => {
      const r = await json(t, "/v1/latent/logprobs", {
        model: t.model,
        messages: msgs,
        trajectories: [{ thoughts: zeros(t), answer: "11" }, { thoughts: zeros(t) }],
      });
      if (r.status !== 200) return `HTTP ${r.status} ${r.text.slice(0, 200)}`;
      return r.body.data.length === 2 && r.body.data.every((d: any) => Number.isFinite(d.log_prob))
        ? null
        : r.text.slice(0, 200);
    },
  },
  {
    name: "latent decode",
    run: async (t) => {
      const r = await json(t, "/v1/latent/decode", { model: t.model, thoughts: zeros(t) });
      return r.status === 200 && typeof r.body.decoded === "string" ? null : `HTTP ${r.status} ${r.text.slice(0, 200)}`;
    },
  },
  {
    name: "models, health, metrics",
    run: async (t) => {
      for (const path of ["/v1/models", "/health", "/metrics"]) {
        const r = await json(t, path, undefined, "GET");
        if (r.status !== 200) return `${path}: HTTP ${r.status}`;
      }
      return null;
    },
  },
];
