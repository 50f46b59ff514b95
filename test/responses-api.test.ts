import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type OpenAI from "openai";
import { startServer, type TestServer } from "./helpers/server.ts";
import { sdkClient } from "./helpers/sdk.ts";

/** POST /v1/responses through the official npm SDK (responses.create / responses.stream) on the
 * shipped model: effort -> reasoning mode, the reasoning item, usage, streaming events. */

const MODEL = "nfcot-trace-small";
const PROGRAM = "a = 5\nb = a * 3\nprint(b)";
const K = 6;

let s: TestServer;
let client: OpenAI;

before(async () => {
  s = await startServer();
  client = sdkClient(s.url);
});
after(() => s.close());

type ReasoningItem = {
  type: "reasoning";
  content: { type: string; text: string }[];
  encrypted_content: string | null;
  thoughts?: { count: number };
};

describe("responses.create", () => {
  test("effort high: the explicit trace as the reasoning item, the answer as the message", async () => {
    const r = await client.responses.create({
      model: MODEL,
      input: PROGRAM,
      temperature: 0,
      reasoning: { effort: "high" },
    });
    assert.equal(r.object, "response");
    assert.equal(r.status, "completed");
    assert.deepEqual(
      r.output.map((o) => o.type),
      ["reasoning", "message"],
    );
    const reasoning = r.output[0] as unknown as ReasoningItem;
    assert.deepEqual(reasoning.content, [{ type: "reasoning_text", text: "a = 5\nb = a * 3 = 5 * 3\nb = 15\n" }]);
    assert.equal(r.output_text, "15");
    assert.equal(r.usage!.output_tokens_details.reasoning_tokens, 18);
    assert.equal(r.usage!.output_tokens, 19);
    assert.ok(r.usage!.input_tokens > 0);
    assert.equal(r.usage!.total_tokens, r.usage!.input_tokens + r.usage!.output_tokens);
  });

  test("effort medium (latent): K thoughts, decoded as the reasoning text; minimal (none): no reasoning item", async () => {
    const r = await client.responses.create({
      model: MODEL,
      input: [{ role: "user", content: PROGRAM }],
      temperature: 0,
      reasoning: { effort: "medium" },
    });
    const reasoning = r.output[0] as unknown as ReasoningItem;
    assert.equal(reasoning.type, "reasoning");
    assert.equal(reasoning.thoughts!.count, K);
    assert.equal(reasoning.content.length, 1, "the shipped model has a thought decoder");
    assert.equal(reasoning.encrypted_content, null, "only with include: reasoning.encrypted_content");
    assert.equal(r.usage!.output_tokens_details.reasoning_tokens, K);
    assert.equal(r.output_text, "15");
    const none = await client.responses.create({
      model: MODEL,
      input: PROGRAM,
      temperature: 0,
      reasoning: { effort: "minimal" as "low" },
    }); // this SDK version does not list "minimal"
    assert.deepEqual(
      none.output.map((o) => o.type),
      ["message"],
    );
    assert.equal(none.usage!.output_tokens_details.reasoning_tokens, 0);
  });

  test("max_output_tokens counts the thoughts: K + 1 is one answer token and status incomplete; K is a 400", async () => {
    const r = await client.responses.create({
      model: MODEL,
      input: PROGRAM,
      max_output_tokens: K + 1,
      reasoning: { effort: "low" },
    });
    assert.equal(r.status, "incomplete");
    assert.deepEqual(r.incomplete_details, { reason: "max_output_tokens" });
    assert.equal(r.usage!.output_tokens, K + 1);
    await assert.rejects(
      client.responses.create({ model: MODEL, input: PROGRAM, max_output_tokens: K, reasoning: { effort: "low" } }),
      (e: InstanceType<typeof OpenAI.APIError>) => {
        assert.equal(e.status, 400);
        assert.equal(e.param, "max_output_tokens");
        return true;
      },
    );
  });

  test("instructions and a foreign encrypted_content: 400 naming the input item", async () => {
    await assert.rejects(
      client.responses.create({
        model: MODEL,
        input: [
          { role: "user", content: PROGRAM },
          { type: "reasoning", id: "rs_x", summary: [], encrypted_content: "not ours" },
          { role: "assistant", content: "15" },
          { role: "user", content: PROGRAM },
        ] as OpenAI.Responses.ResponseInput,
      }),
      (e: InstanceType<typeof OpenAI.APIError>) => e.status === 400 && e.param === "input[1].encrypted_content",
    );
  });
});

describe("responses.stream", () => {
  test("events in order, deltas that add up to the final response, which equals the non-streamed one", async () => {
    const body = { model: MODEL, input: PROGRAM, temperature: 0, reasoning: { effort: "high" as const } };
    const stream = client.responses.stream(body);
    const types: string[] = [];
    let reasoning = "";
    let text = "";
    const seqs: number[] = [];
    for await (const e of stream) {
      types.push(e.type);
      seqs.push(e.sequence_number);
      if (e.type === "response.output_text.delta") text += e.delta;
      if ((e.type as string) === "response.reasoning_text.delta")
        reasoning += (e as unknown as { delta: string }).delta;
    }
    const final = await stream.finalResponse();
    assert.deepEqual(
      seqs,
      seqs.map((_, i) => i),
    );
    const first = (t: string) => types.indexOf(t);
    assert.equal(types[0], "response.created");
    assert.equal(types[1], "response.in_progress");
    assert.ok(first("response.reasoning_text.delta") < first("response.output_text.delta"));
    assert.equal(types.at(-1), "response.completed");
    assert.equal(reasoning, "a = 5\nb = a * 3 = 5 * 3\nb = 15\n");
    assert.equal(text, "15");
    const whole = await client.responses.create(body);
    assert.deepEqual(
      final.output.map((o) => o.type),
      whole.output.map((o) => o.type),
    );
    // This SDK version adds output_text to created responses only: read the message item.
    const message = final.output.find((o) => o.type === "message") as OpenAI.Responses.ResponseOutputMessage;
    assert.deepEqual(
      message.content.map((c) => (c as OpenAI.Responses.ResponseOutputText).text),
      [whole.output_text],
    );
    assert.deepEqual(final.usage, whole.usage);
  });
});

describe("a latent reasoning item sent back", () => {
  // Small KV blocks, so that the cache's granularity shows where two prompts part.
  let small: TestServer;
  let client: OpenAI;
  before(async () => {
    small = await startServer({ blockSize: 4 });
    client = sdkClient(small.url);
  });
  after(() => small.close());

  test("the next turn runs on the same thoughts, from the prefix cache: never re-sampled", async () => {
    const user1 = { role: "user" as const, content: PROGRAM };
    const first = await client.responses.create({
      model: MODEL,
      input: [user1],
      temperature: 0.8,
      reasoning: { effort: "medium", latent_temperature: 0.9 } as OpenAI.Reasoning,
      include: ["reasoning.encrypted_content"],
      ...({ seed: 11 } as object), // an extension (as vLLM): not in the SDK's types
    });
    const item = first.output[0] as unknown as ReasoningItem;
    assert.equal(item.type, "reasoning");
    assert.match(item.encrypted_content!, /^nfcot1:/);
    const user2 = { role: "user" as const, content: "c = 2\nprint(c)" };
    const followUp = (withReasoning: boolean) =>
      client.responses.create({
        model: MODEL,
        input: [
          user1,
          ...(withReasoning ? [item] : []),
          { role: "assistant", content: first.output_text },
          user2,
        ] as OpenAI.Responses.ResponseInput,
        temperature: 0,
        reasoning: { effort: "medium" },
      });
    const second = await followUp(true);
    // Turn 1's positions that ran (prompt, K thoughts, the answer; its EOS was sampled, never run)
    // are the prefix of turn 2's prompt: every full 4-position block of them is served cached.
    const sequence1 = first.usage!.input_tokens + first.usage!.output_tokens;
    assert.equal(second.usage!.input_tokens_details.cached_tokens, Math.floor(sequence1 / 4) * 4);
    assert.equal(second.usage!.output_tokens_details.reasoning_tokens, K, "only the new turn's thoughts are sampled");
    // Without the item the earlier turn has no thoughts: the prompts part inside turn 1's prompt.
    const without = await followUp(false);
    assert.ok(without.usage!.input_tokens_details.cached_tokens < second.usage!.input_tokens_details.cached_tokens);
  });
});

test("what /v1/responses cannot honour is refused with 400 unsupported_parameter naming it", async () => {
  const cases: [Record<string, unknown>, string][] = [
    [{ tools: [{ type: "function", name: "add", parameters: {} }] }, "tools"],
    [{ tool_choice: "auto" }, "tool_choice"],
    [{ previous_response_id: "resp_x" }, "previous_response_id"],
    [{ background: true }, "background"],
    [{ text: { format: { type: "json_object" } } }, "text.format"],
  ];
  for (const [extra, param] of cases) {
    await assert.rejects(
      client.responses.create({ model: MODEL, input: PROGRAM, ...extra } as never),
      (e: InstanceType<typeof OpenAI.APIError>) => {
        assert.equal(e.status, 400);
        assert.equal(e.code, "unsupported_parameter");
        assert.equal(e.param, param);
        return true;
      },
    );
  }
  const text = await client.responses.create({
    model: MODEL,
    input: PROGRAM,
    text: { format: { type: "text" } },
    temperature: 0,
  });
  assert.equal(text.output_text, "15");
});

test("unknown fields on /v1/responses are ignored, named in x-ignored-fields", async () => {
  const { response } = await client.responses
    .create({ model: MODEL, input: PROGRAM, temperature: 0, not_a_field: 1 } as never)
    .withResponse();
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("x-ignored-fields"), "not_a_field");
});
