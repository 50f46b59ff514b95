import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startServer, type TestServer } from "./helpers/server.ts";
import { postJson } from "./helpers/sse.ts";

/** Latent scoring must agree with the log-likelihoods reported at generation for the same
 * trajectory (to 1e-3), batched and unbatched, with thoughts as base64 or as arrays. The server
 * runs with prefix caching on (the default), so the trajectories' blocks cached by generation
 * are hit when they are scored: the scored positions must still be computed. */

const MODEL = "nfcot-trace-small";
const messages = [{ role: "user", content: "a = 4\nb = a + 2\nc = b * 3\nprint(c)" }];
const TOL = 1e-3;

let s: TestServer;
let generated: any[];

/** Three sampled trajectories (temperature 1 text, default T_z) with their reported likelihoods. */
async function generate(url: string): Promise<any[]> {
  const res = await postJson(`${url}/v1/chat/completions`, {
    model: MODEL,
    messages,
    n: 3,
    seed: 123,
    max_tokens: 12,
    temperature: 1,
    logprobs: true,
    reasoning: { return_thoughts: true },
  });
  assert.equal(res.status, 200);
  return (await res.json()).choices;
}

before(async () => {
  s = await startServer();
  generated = await generate(s.url);
});
after(() => s.close());

const score = async (trajectories: unknown[], url = s.url) => {
  const res = await postJson(`${url}/v1/latent/logprobs`, { model: MODEL, messages, trajectories });
  assert.equal(res.status, 200);
  return (await res.json()).data as any[];
};
const toArrays = (vectors: string[]) =>
  vectors.map((b) => {
    const buf = Buffer.from(b, "base64");
    return Array.from({ length: buf.length / 4 }, (_, i) => buf.readFloatLE(i * 4));
  });
const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= TOL, `${what}: ${a} vs ${b}`);

/** Generation's reported values against a score of the same trajectory. */
function assertAgrees(choice: any, scored: any, what: string): void {
  assert.equal(scored.thought_log_probs.length, 6);
  choice.thoughts.log_probs.forEach((lp: number, i: number) =>
    close(scored.thought_log_probs[i], lp, `${what} thought ${i}`),
  );
  close(scored.thought_log_prob, choice.thoughts.log_prob, `${what} thought sum`);
  const gen = choice.logprobs.content;
  // The answer is scored followed by EOS; generation reports no EOS.
  assert.equal(scored.answer_logprobs.length, gen.length + 1, what);
  assert.equal(scored.answer_logprobs.at(-1).token, "</s>");
  gen.forEach((t: any, i: number) => {
    assert.equal(scored.answer_logprobs[i].token, t.token);
    close(scored.answer_logprobs[i].logprob, t.logprob, `${what} token ${i}`);
  });
  const answerSum = scored.answer_logprobs.reduce((a: number, t: any) => a + t.logprob, 0);
  close(scored.answer_log_prob, answerSum, `${what} answer sum`);
  close(scored.log_prob, scored.thought_log_prob + scored.answer_log_prob, `${what} total`);
}

describe("POST /v1/latent/logprobs", () => {
  test("a batch of trajectories agrees with generation", async () => {
    assert.equal(generated.length, 3);
    const data = await score(generated.map((c) => ({ thoughts: c.thoughts.vectors, answer: c.message.content })));
    assert.deepEqual(
      data.map((d) => d.index),
      [0, 1, 2],
    );
    generated.forEach((c, i) => assertAgrees(c, data[i], `batched ${i}`));
  });

  test("one trajectory per request agrees too, and thoughts as arrays score as base64 does", async () => {
    for (const [i, c] of generated.entries()) {
      const [one] = await score([{ thoughts: c.thoughts.vectors, answer: c.message.content }]);
      assertAgrees(c, one, `unbatched ${i}`);
      const [asArrays] = await score([{ thoughts: toArrays(c.thoughts.vectors), answer: c.message.content }]);
      assert.deepEqual(asArrays.thought_log_probs, one.thought_log_probs);
      assert.deepEqual(asArrays.answer_logprobs, one.answer_logprobs);
    }
  });

  test("without an answer only the thoughts are scored", async () => {
    const [d] = await score([{ thoughts: generated[0].thoughts.vectors }]);
    assert.deepEqual(d.answer_logprobs, []);
    assert.equal(d.answer_log_prob, 0);
    generated[0].thoughts.log_probs.forEach((lp: number, i: number) =>
      close(d.thought_log_probs[i], lp, `thought ${i}`),
    );
    assert.equal(d.log_prob, d.thought_log_prob);
  });

  test("an answer that overflows the context is a 400 naming the trajectory", async () => {
    const long = Array.from({ length: 300 }, () => "a").join(" ");
    const res = await postJson(`${s.url}/v1/latent/logprobs`, {
      model: MODEL,
      messages,
      trajectories: [
        { thoughts: generated[0].thoughts.vectors },
        { thoughts: generated[0].thoughts.vectors, answer: long },
      ],
    });
    assert.equal(res.status, 400);
    const { error } = await res.json();
    assert.equal(error.code, "context_length_exceeded");
    assert.equal(error.param, "trajectories[1].answer");
  });
});

describe("POST /v1/latent/decode", () => {
  test("decodes the thoughts to the trace reported at generation", async () => {
    const c = generated[1];
    const res = await postJson(`${s.url}/v1/latent/decode`, { model: MODEL, thoughts: c.thoughts.vectors });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.object, "latent.decode");
    assert.equal(body.decoded, c.thoughts.decoded);
    assert.equal(body.decoded, body.steps.map((st: any) => `${st.variable} = ${st.value}`).join("\n"));
    assert.ok(body.steps.length <= 6);
  });
});
