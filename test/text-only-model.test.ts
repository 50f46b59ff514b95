import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { dirname } from "node:path";
import { after, before, describe, test } from "node:test";
import type OpenAI from "openai";
import { startServer, type TestServer } from "./helpers/server.ts";
import { postJson, readSse } from "./helpers/sse.ts";
import { makeTextOnlyModel } from "./helpers/text-only-model.ts";
import { sdkClient } from "./helpers/sdk.ts";

/** A text-only model (no `latent` in its manifest: what the exporter writes for a Hugging Face
 * checkpoint without NF-CoT extras), made from the shipped model by graph surgery so its answers
 * are the shipped model's answers in mode "none". Its embedding is padded 10 ids past the
 * tokenizer with logits of +50 (as Qwen pads 151,669 tokens to 151,936 rows): served unmasked,
 * every greedy token would be a padded id. eos_token_ids adds "=" (12) to </s> (3). */

const PROGRAM = "a = 5\nb = a * 3\nprint(b)";
const EXPLICIT_PROMPT = `<s><|user|>\n${PROGRAM}\n<|assistant|><|explicit|>`;
const TOKENIZER_VOCAB = 246;

let dir: string;
let shipped: { chat: string; completion: string };
let s: TestServer;
let client: OpenAI;

async function answers(srv: TestServer) {
  const c = await (
    await postJson(`${srv.url}/v1/chat/completions`, {
      model: srv.app.modelName,
      messages: [{ role: "user", content: PROGRAM }],
      temperature: 0,
      max_tokens: 20,
      reasoning: { mode: "none" },
    })
  ).json();
  const p = await (
    await postJson(`${srv.url}/v1/completions`, {
      model: srv.app.modelName,
      prompt: EXPLICIT_PROMPT,
      temperature: 0,
      max_tokens: 30,
    })
  ).json();
  return { chat: c.choices[0].message.content as string, completion: p.choices[0].text as string };
}

before(async () => {
  dir = makeTextOnlyModel({ padVocab: 10, eosIds: [3, 12] });
  const ref = await startServer();
  try {
    shipped = await answers(ref);
  } finally {
    await ref.close();
  }
  s = await startServer({ modelDir: dir });
  client = sdkClient(s.url);
});
after(async () => {
  await s?.close();
  rmSync(dirname(dir), { recursive: true, force: true });
});

describe("a text-only model", () => {
  test("answers as the shipped model does in mode none, never sampling the padded ids", async () => {
    const mine = await answers(s);
    assert.ok(shipped.chat.length > 0);
    assert.equal(mine.chat, shipped.chat);
    // Generation stops at any of eos_token_ids: here at the first "=" of the written trace.
    assert.ok(shipped.completion.includes(" = "), shipped.completion);
    assert.equal(mine.completion, shipped.completion.slice(0, shipped.completion.indexOf(" =")));
  });

  test("sampled tokens (temperature 1, seeded, through the SDK) are all tokenizer ids", async () => {
    const r = await client.completions.create({
      model: s.app.modelName,
      prompt: EXPLICIT_PROMPT,
      max_tokens: 24,
      seed: 5,
      logprobs: 1,
      ignore_eos: true,
    } as never);
    const choice = r.choices[0]!;
    assert.equal(r.usage!.completion_tokens, 24); // ignore_eos holds both eos ids back
    assert.equal(choice.finish_reason, "length");
    const tok = await (await postJson(`${s.url}/tokenize`, { prompt: choice.text })).json();
    assert.ok(
      tok.tokens.length > 0 && tok.tokens.every((t: number) => t < TOKENIZER_VOCAB && t !== 1),
      JSON.stringify(tok),
    );
    assert.ok(choice.logprobs!.tokens!.every((t) => t.length > 0));
  });

  test("streams end with a finish_reason and no thought chunks", async () => {
    const res = await postJson(`${s.url}/v1/chat/completions`, {
      model: s.app.modelName,
      messages: [{ role: "user", content: PROGRAM }],
      temperature: 0,
      max_tokens: 20,
      stream: true,
    });
    const { chunks, done } = await readSse(res);
    assert.ok(done);
    assert.equal(chunks.map((c) => c.choices[0]?.delta?.content ?? "").join(""), shipped.chat);
    assert.equal(chunks.filter((c) => c.choices[0]?.thought).length, 0);
    assert.equal(chunks.at(-1).choices[0].finish_reason, "stop");
  });

  test("/v1/models says latent reasoning is unavailable and why", async () => {
    const m = (await (await fetch(`${s.url}/v1/models`)).json()).data[0];
    assert.equal(m.nfcot.latent_available, false);
    assert.match(m.nfcot.latent_unavailable_reason, /no NF-CoT extras/);
    assert.deepEqual(m.nfcot.reasoning_modes, ["none"]);
    assert.equal(m.nfcot.default_reasoning_mode, "none");
    assert.equal(m.nfcot.num_thoughts, 0);
  });

  test("latent requests get a 400 naming the reason", async () => {
    const cases: [string, Record<string, unknown>, string][] = [
      [
        "/v1/chat/completions",
        { messages: [{ role: "user", content: PROGRAM }], reasoning: { mode: "latent" } },
        "reasoning.mode",
      ],
      ["/v1/latent/logprobs", { prompt: PROGRAM, trajectories: [{ thoughts: [[0]] }] }, "model"],
      ["/v1/latent/decode", { thoughts: [[0]] }, "model"],
    ];
    for (const [path, body, param] of cases) {
      const res = await postJson(`${s.url}${path}`, { model: s.app.modelName, ...body });
      assert.equal(res.status, 400, path);
      const e = (await res.json()).error;
      assert.equal(e.code, "invalid_request", path);
      assert.equal(e.param, param, path);
      assert.match(e.message, /no NF-CoT extras.*latent reasoning is unavailable/, path);
    }
  });
});
