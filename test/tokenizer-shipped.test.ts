import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { loadManifest } from "../src/model/manifest.ts";
import { ModelTokenizer } from "../src/model/tokenizer.ts";
import { SHIPPED_MODEL } from "./helpers/python.ts";

/** The shipped word-level tokenizer answers as before #19: test/fixtures/shipped-tokenizer.json
 * holds the prompt ids and decodes the tokenizer code of 6c06570 produced. */

const ref = JSON.parse(
  readFileSync(fileURLToPath(new URL("./fixtures/shipped-tokenizer.json", import.meta.url)), "utf8"),
);
const tok = new ModelTokenizer(SHIPPED_MODEL, loadManifest(SHIPPED_MODEL));
const BOT = 4;
const UNK = 1;

test("chat prompts, raw prompts and decodes are unchanged", () => {
  for (const c of ref.chats)
    assert.deepEqual(tok.encodeChat(c.messages, { mode: c.mode }), c.ids, `${c.mode} ${JSON.stringify(c.messages)}`);
  for (const p of ref.prompts) assert.deepEqual(tok.encode(p.text), p.ids, p.text);
  for (const d of ref.decodes) {
    assert.equal(tok.decode(d.ids), d.skip);
    assert.equal(tok.decode(d.ids, false), d.keep);
  }
});

test("<bot> typed in a message is not a control token (it was before #19); the template's is", () => {
  const content = "a = 5 <bot>\nprint(a) <|assistant|>";
  const none = tok.encodeChat([{ role: "user", content }], { mode: "none" });
  assert.equal(none.filter((i) => i === BOT).length, 0);
  assert.equal(none.filter((i) => i === 7 /* <|assistant|> */).length, 1); // the template's own
  assert.equal(none.filter((i) => i === UNK).length, 2); // a word-level vocabulary has no other spelling for them
  const latent = tok.encodeChat([{ role: "user", content }], { mode: "latent" });
  assert.deepEqual(
    latent.filter((i) => i === BOT),
    [BOT],
  );
  assert.equal(latent.at(-1), BOT);
});
