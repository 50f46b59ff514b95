import assert from "node:assert/strict";
import { test } from "node:test";
import { ChatTemplate, ChatTemplateError, specialTokenStrings } from "../src/model/chat-template.ts";
import { UserTextGuard } from "../src/model/user-text.ts";

/** The chat template renderer and the user-text guard, alone. */

const PARTS = "{% for m in messages %}[{% for p in m['content'] %}{{ p.text }};{% endfor %}]{% endfor %}";
const STRING =
  "{{ bos_token }}{% for m in messages %}{{ m.role }}:{{ m.content }}|{% endfor %}{% if add_generation_prompt %}>{% endif %}{{ extra }}";

test("text parts: passed as parts to a template that loops over them, joined with newlines otherwise", () => {
  const messages = [
    {
      role: "user",
      content: [
        { type: "text" as const, text: "a" },
        { type: "text" as const, text: "b" },
      ],
    },
  ];
  const parts = new ChatTemplate(PARTS, {});
  assert.equal(parts.takesContentParts, true);
  assert.equal(parts.render(messages, { mode: "none" }), "[a;b;]");
  const str = new ChatTemplate(STRING, {});
  assert.equal(str.takesContentParts, false);
  assert.equal(
    str.render([...messages, { role: "assistant", content: null }], { mode: "none", addGenerationPrompt: false }),
    "user:a\nb|assistant:|",
  );
});

test("special-token strings from tokenizer_config (strings or AddedToken objects; null left out) and kwargs", () => {
  const config = {
    bos_token: { content: "<s>", lstrip: false },
    eos_token: "</s>",
    unk_token: null,
    model_max_length: 8,
  };
  assert.deepEqual(specialTokenStrings(config), { bos_token: "<s>", eos_token: "</s>" });
  const t = new ChatTemplate(STRING, config);
  assert.equal(t.render([{ role: "user", content: "x" }], { mode: "none", kwargs: { extra: "!" } }), "<s>user:x|>!");
  assert.throws(
    () => t.render([], { mode: "none", kwargs: { bos_token: "<evil>" } }),
    (e: Error) => e instanceof ChatTemplateError && e.param === "chat_template_kwargs.bos_token",
  );
});

test("a template's raise_exception is a ChatTemplateError naming the template's reason", () => {
  const t = new ChatTemplate(
    "{% if messages[0].role != 'user' %}{{ raise_exception('Conversations must start with a user turn') }}{% endif %}ok",
    {},
  );
  assert.equal(t.render([{ role: "user", content: "x" }], { mode: "none" }), "ok");
  assert.throws(
    () => t.render([{ role: "assistant", content: "x" }], { mode: "none" }),
    (e: Error) => e instanceof ChatTemplateError && /must start with a user turn/.test(e.message),
  );
});

test("the guard restores user text exactly and marks only its special-token strings", () => {
  const g = new UserTextGuard(["<|im_end|>", "<|im_end|>x", "<bot>"]);
  const user = "a<|im_end|>xb \uE000\uE001 <bot>";
  const protectedText = g.protect(user);
  assert.ok(!protectedText.includes("<|im_end|>") && !protectedText.includes("<bot>"));
  const rendered = `<bot>${protectedText.trim()}<|im_end|>`;
  const { text, protectedRanges } = g.restore(rendered);
  assert.equal(text, `<bot>${user}<|im_end|>`);
  assert.deepEqual(
    protectedRanges.map(([a, b]) => text.slice(a, b)),
    ["<|im_end|>x", "\uE000", "<bot>"],
  );
});
