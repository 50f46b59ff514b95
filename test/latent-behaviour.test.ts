import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { runPython, SHIPPED_MODEL } from "./helpers/python.ts";
import { startServer, type TestServer } from "./helpers/server.ts";
import { postJson, readSse } from "./helpers/sse.ts";

/** Behaviour log-probs (the density at the T_z that drew each thought) beside the T_z = 1 density,
 * and the flow log-det, from generation and from the scoring route, against the PyTorch reference
 * (models/nfcot/rl_score.py on the shipped weights read back from the ONNX initializers). */

const MODEL = "nfcot-trace-small";
const SOURCE = "a = 7\nb = a - 9\nc = b * a\nprint(c)";
const TZ = 0.7;
const TOL = 1e-3;

let s: TestServer;
let dir: string;
let choices: any[];
let reference: any[];

before(async () => {
  s = await startServer();
  dir = mkdtempSync(join(tmpdir(), "nfcot-behaviour-"));
  const res = await postJson(`${s.url}/v1/chat/completions`, {
    model: MODEL,
    messages: [{ role: "user", content: SOURCE }],
    n: 3,
    seed: 11,
    max_tokens: 12,
    temperature: 1,
    logprobs: true,
    reasoning: { mode: "latent", latent_temperature: TZ, return_thoughts: true, return_flow_log_det: true },
  });
  assert.equal(res.status, 200);
  choices = (await res.json()).choices;
  // The trajectories' token ids: the prompt as the chat template renders it (from /tokenize, so a
  // template drift would show), the answer tokens by their text.
  const tok = await postJson(`${s.url}/tokenize`, {
    model: MODEL,
    messages: [{ role: "user", content: SOURCE }],
    reasoning_mode: "latent",
  });
  assert.equal(tok.status, 200, await tok.clone().text());
  const promptIds: number[] = (await tok.json()).tokens;
  const vocab = JSON.parse(readFileSync(join(SHIPPED_MODEL, "tokenizer.json"), "utf8")).model.vocab as Record<
    string,
    number
  >;
  const trajectories = choices.map((c) => ({
    prompt_ids: promptIds,
    thoughts: c.thoughts.vectors,
    answer_ids: c.logprobs.content.map((t: any) => vocab[t.token]),
  }));
  writeFileSync(join(dir, "in.json"), JSON.stringify({ temperature: TZ, trajectories }));
  const r = runPython([
    "-m",
    "nfcot.rl_score",
    "--model-dir",
    SHIPPED_MODEL,
    "--in",
    join(dir, "in.json"),
    "--out",
    join(dir, "out.json"),
  ]);
  assert.equal(r.status, 0, r.output);
  reference = JSON.parse(readFileSync(join(dir, "out.json"), "utf8")).trajectories;
});
after(async () => {
  await s.close();
  rmSync(dir, { recursive: true, force: true });
});

const close = (got: number, want: number, what: string) =>
  assert.ok(Math.abs(got - want) <= TOL, `${what}: server ${got}, PyTorch ${want}`);
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

test("each sampled thought carries its T_z = 1 density and its behaviour density at the sampling T_z, equal to PyTorch's", () => {
  assert.equal(choices.length, 3);
  choices.forEach((c, i) => {
    const t = c.thoughts;
    const ref = reference[i]!;
    assert.equal(t.temperature, TZ);
    assert.equal(t.log_probs.length, 6);
    assert.equal(t.behaviour_log_probs.length, 6);
    t.log_probs.forEach((x: number, k: number) =>
      close(x, ref.thought_log_probs[k], `choice ${i} thought ${k} log_prob (T_z = 1)`),
    );
    t.behaviour_log_probs.forEach((x: number, k: number) =>
      close(x, ref.behaviour_log_probs[k], `choice ${i} thought ${k} behaviour_log_prob`),
    );
    close(t.behaviour_log_prob, sum(ref.behaviour_log_probs), `choice ${i} behaviour_log_prob`);
    // Different densities of the same vector: N(mu, sigma^2) and N(mu, (0.7 sigma)^2) do not coincide.
    assert.ok(Math.abs(t.behaviour_log_prob - t.log_prob) > 1, "the two densities differ");
    // The flow log-det and log p(e) = log p(u) + log |det dF/de|.
    close(t.flow_log_det, ref.flow_log_det, `choice ${i} flow_log_det`);
    assert.equal(t.e_log_prob, t.log_prob + t.flow_log_det);
    c.logprobs.content.forEach((x: any, j: number) =>
      close(x.logprob, ref.answer_logprobs[j], `choice ${i} answer token ${j}`),
    );
  });
});

test("the scoring route returns the same fields for the same trajectories", async () => {
  const res = await postJson(`${s.url}/v1/latent/logprobs`, {
    model: MODEL,
    messages: [{ role: "user", content: SOURCE }],
    latent_temperature: TZ,
    return_flow_log_det: true,
    trajectories: choices.map((c) => ({ thoughts: c.thoughts.vectors })),
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-weights-version"), "v0");
  const body = await res.json();
  assert.equal(body.weights_version, "v0");
  body.data.forEach((d: any, i: number) => {
    const t = choices[i].thoughts;
    d.thought_log_probs.forEach((x: number, k: number) => close(x, t.log_probs[k], `scored thought ${k}`));
    d.thought_behaviour_log_probs.forEach((x: number, k: number) =>
      close(x, reference[i].behaviour_log_probs[k], `scored behaviour ${k}`),
    );
    close(d.thought_behaviour_log_prob, t.behaviour_log_prob, "scored behaviour sum");
    close(d.flow_log_det, t.flow_log_det, "scored flow_log_det");
    close(d.e_log_prob, d.thought_log_prob + d.flow_log_det, "scored e_log_prob");
  });
});

test("at T_z = 0 (u = mu) there is no behaviour density: null, and streams carry both fields per thought", async () => {
  const res = await postJson(`${s.url}/v1/chat/completions`, {
    model: MODEL,
    messages: [{ role: "user", content: SOURCE }],
    max_tokens: 10,
    stream: true,
    reasoning: { mode: "latent", latent_temperature: 0 },
  });
  assert.equal(res.headers.get("x-weights-version"), "v0");
  const { chunks, done } = await readSse(res);
  assert.ok(done);
  const thoughts = chunks.map((c) => c.choices[0]?.thought).filter(Boolean);
  assert.equal(thoughts.length, 6);
  for (const t of thoughts) {
    assert.equal(typeof t.log_prob, "number");
    assert.equal(t.behaviour_log_prob, null);
  }
  const summary = chunks.find((c) => c.choices[0]?.thoughts)!.choices[0].thoughts;
  assert.equal(summary.behaviour_log_prob, null);
  assert.equal(summary.flow_log_det, undefined, "no flow log-det unless asked for");
  assert.ok(chunks.every((c) => c.weights_version === "v0"));
});
