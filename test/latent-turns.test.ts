import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { encodeChat } from "../src/api/chat-prompt.ts";
import { budgetMaxTokens } from "../src/api/sampling.ts";
import type { ChatMessage } from "../src/api/schemas.ts";
import type { EngineClient } from "../src/engine/client.ts";
import type { EngineInfo } from "../src/engine/engine-info.ts";
import type { EngineEvent, GenerateRequest } from "../src/engine/types.ts";
import { ServeError } from "../src/errors.ts";
import { ChatTemplateError, type TemplateMessage } from "../src/model/chat-template.ts";
import { modelInfo } from "../src/model/model-info.ts";
import { THOUGHT } from "../src/model/positions.ts";
import { chatPrompt, type Prompt } from "../src/model/prompt.ts";
import { ModelTokenizer } from "../src/model/tokenizer.ts";
import { manifest, sampling, startEngine, TEST_PROGRAMS, tokenizer } from "./helpers/engine.ts";
import { SHIPPED_MODEL } from "./helpers/python.ts";

// A latent assistant turn carried back with its thoughts continues the sequence the engine ran:
// the real engine on the shipped model, prefix caching on, blocks of 8 positions.
const info = modelInfo(manifest);
const K = info.numThoughts;
const BLOCK = 8;
let engine: EngineClient;
before(async () => {
  engine = await startEngine({ enablePrefixCaching: true, blockSize: BLOCK });
});
after(async () => engine.close());

interface Turn {
  tokens: number[];
  text: string;
  vectors: Float32Array[];
  thoughtIndexes: number[];
  finish: Extract<EngineEvent, { type: "finish" }>;
}

let counter = 0;
async function generate(p: Prompt): Promise<Turn> {
  const req: GenerateRequest = {
    kind: "generate",
    id: `lt${counter++}`,
    promptIds: p.ids,
    opensLatentSpan: p.opensLatentSpan,
    ...(p.thoughts ? { promptThoughts: p.thoughts } : {}),
    // Greedy text; thoughts drawn at T_z = 0.9 from a fixed seed (the vectors are not all mu).
    sampling: sampling({ temperature: 0, seed: 1234, maxTokens: 16 }),
    latent: { temperature: 0.9, returnVectors: true },
    choiceIndex: 0,
    leaderId: null,
  };
  const t: Partial<Turn> & { tokens: number[]; text: string; vectors: Float32Array[]; thoughtIndexes: number[] } = {
    tokens: [],
    text: "",
    vectors: [],
    thoughtIndexes: [],
  };
  for await (const e of engine.generate(req)) {
    if (e.type === "token") {
      t.tokens.push(e.tokenId);
      t.text += e.text;
    } else if (e.type === "thought") {
      t.vectors.push(e.vector!);
      t.thoughtIndexes.push(e.index);
    } else if (e.type === "finish") {
      t.finish = e;
      t.text += e.tail;
    } else if (e.type === "error") throw new Error(e.message);
  }
  return t as Turn;
}

const user = (i: number): TemplateMessage => ({ role: "user", content: TEST_PROGRAMS[i]!.source });
const assistant = (t: Turn, vectors = t.vectors): TemplateMessage => ({
  role: "assistant",
  content: t.text,
  thoughts: vectors,
});
const fullBlocks = (n: number) => Math.floor(n / BLOCK) * BLOCK;

test("a continued latent conversation is served from the prefix cache through the earlier turn, whose thoughts are not sampled again", async () => {
  const p1 = chatPrompt(tokenizer, info, [user(2)], { mode: "latent" });
  const t1 = await generate(p1);
  assert.deepEqual([t1.text, t1.tokens, t1.vectors.length, t1.finish.reason], ["-11", [135], K, "stop"]);
  // The assumption chatPrompt rests on: the answer's text re-tokenizes to the ids generated.
  assert.deepEqual(tokenizer.encodeText(t1.text), t1.tokens);

  const p2 = chatPrompt(tokenizer, info, [user(2), assistant(t1), user(5)], { mode: "latent" });
  // Turn 1 exactly as the engine ran it, then EOS and the template's "\n", then the new turn.
  const sequence1 = [...p1.ids, ...t1.vectors.map(() => THOUGHT), ...t1.tokens];
  assert.deepEqual(p2.ids.slice(0, sequence1.length + 1), [...sequence1, info.special.eos]);
  assert.deepEqual(p2.thoughts, t1.vectors);
  assert.equal(p2.opensLatentSpan, true);
  // The budget counts the carried thoughts as prompt positions (and K more for the new span).
  const served = { maxContext: info.maxContext, numThoughts: K } as EngineInfo;
  assert.equal(
    budgetMaxTokens(served, p2, { value: null, param: "max_tokens" }, "messages"),
    info.maxContext - p2.ids.length - K,
  );
  const t2 = await generate(p2);
  // Turn 1's positions ran (prompt, K thoughts, the answer; the EOS was sampled, never run):
  // every full block of them is served from the cache.
  assert.equal(sequence1.length, 52);
  assert.equal(t2.finish.cachedTokens, fullBlocks(sequence1.length));
  assert.equal(t2.finish.cachedTokens, 48);
  assert.deepEqual(t2.thoughtIndexes, [0, 1, 2, 3, 4, 5]); // the new turn's span alone
  assert.equal(t2.finish.thoughts, K);
  assert.equal(t2.finish.promptTokens, p2.ids.length);

  // A third turn continues both: the cache serves everything turn 2 ran.
  const p3 = chatPrompt(tokenizer, info, [user(2), assistant(t1), user(5), assistant(t2), user(7)], { mode: "latent" });
  const sequence2 = [...p2.ids, ...t2.vectors.map(() => THOUGHT), ...t2.tokens];
  assert.deepEqual(p3.ids.slice(0, sequence2.length), sequence2);
  assert.deepEqual(p3.thoughts, [...t1.vectors, ...t2.vectors]);
  const t3 = await generate(p3);
  assert.equal(t3.finish.cachedTokens, fullBlocks(sequence2.length));
  assert.deepEqual(t3.thoughtIndexes, [0, 1, 2, 3, 4, 5]);

  // Another vector at turn 1's first thought position is another input: the cache stops there.
  const moved = t1.vectors.map((v, k) => (k === 0 ? v.map((x) => x + 0.5) : v));
  const t2b = await generate(chatPrompt(tokenizer, info, [user(2), assistant(t1, moved), user(5)], { mode: "latent" }));
  assert.equal(t2b.finish.cachedTokens, fullBlocks(p1.ids.length));
  assert.equal(t2b.finish.cachedTokens, 40);
});

function tokenizerWith(template: string): ModelTokenizer {
  const dir = mkdtempSync(join(tmpdir(), "nfcot-template-"));
  try {
    for (const f of [manifest.tokenizer, manifest.tokenizer_config]) copyFileSync(join(SHIPPED_MODEL, f), join(dir, f));
    writeFileSync(join(dir, "chat_template.jinja"), template);
    return new ModelTokenizer(dir, { ...manifest, chat_template: "chat_template.jinja" });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const TURNS =
  "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}<|user|>\n{{ message['content'] }}{{ '\\n' if loop.last else '' }}" +
  "{% elif message['role'] == 'assistant' %}<|assistant|>\n{{ message['content'] }}{{ eos_token }}\n{% endif %}{% endfor %}";
const ROTATING = `${TURNS}{% if add_generation_prompt %}\n<|assistant|><|latent|><bot>{% endif %}`;
const HEADED = `{% if add_generation_prompt %}<|latent|>{% endif %}${TURNS.replace("{{ '\\n' if loop.last else '' }}", "\n")}{% if add_generation_prompt %}<|assistant|><bot>{% endif %}`;

test("a chat template that is not prefix-stable refuses the turn that carries thoughts, as the client's 400", () => {
  const vectors = Array.from({ length: K }, () => new Float32Array(info.thoughtDim));
  const messages = [user(0), { role: "assistant", content: "1", thoughts: vectors }, user(1)];
  const cases: [ModelTokenizer, string][] = [
    // The last message ends in "\n" only while it is the last one.
    [
      tokenizerWith(ROTATING),
      "messages[1] carries thoughts, but the chat template's rendering with this turn does not extend the conversation before it, so the turn cannot be rendered as it was generated.",
    ],
    // The generation prompt writes a header before the conversation.
    [
      tokenizerWith(HEADED),
      "messages[1] carries thoughts, but the chat template's generation prompt does not extend the conversation before it, so the turn cannot be rendered as it was generated.",
    ],
  ];
  for (const [tok, message] of cases) {
    assert.throws(
      () => chatPrompt(tok, info, messages, { mode: "latent" }),
      (e: unknown) => e instanceof ChatTemplateError && e.message === message && e.param === "messages[1]",
    );
    // The chat routes' renderer turns it into the OpenAI-shaped 400.
    const app = { tokenizer: tok, engine: { info } } as unknown as FastifyInstance;
    assert.throws(
      () => encodeChat(app, messages as ChatMessage[], { mode: "latent" }),
      (e: unknown) =>
        e instanceof ServeError &&
        e.status === 400 &&
        e.code === "invalid_request" &&
        e.param === "messages[1]" &&
        e.message === message,
    );
    // Without thoughts the same template renders as before.
    assert.ok(
      chatPrompt(tok, info, [user(0), { role: "assistant", content: "1" }, user(1)], { mode: "latent" }).ids.length > 0,
    );
  }
  // Only an assistant turn carries thoughts, and only as vectors.
  assert.throws(() => chatPrompt(tokenizer, info, [{ ...user(0), thoughts: vectors }], { mode: "latent" }), {
    message: "messages[0]: only an assistant turn can carry thoughts.",
  });
  assert.throws(
    () =>
      chatPrompt(tokenizer, info, [user(0), { role: "assistant", content: "1", thoughts: [[0, 1]] }, user(1)], {
        mode: "latent",
      }),
    {
      message: "messages[1].thoughts must be thought vectors.",
    },
  );
});
