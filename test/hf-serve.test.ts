import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { runPython } from "./helpers/python.ts";
import { startServer } from "./helpers/server.ts";

// Export then serve: a tiny random Qwen3 checkpoint in the Hugging Face layout (text only, tied
// embeddings, no BOS, an embedding padded past its tokenizer, eos ids [</s>, <eot>]) exported
// with `nfcot.export --hf` and served by the real engine; greedy completions through the official
// SDK equal the project's PyTorch model's greedy continuation of the same prompt.

const PROMPT = "a = 5\nb = a * 3\nprint(b)";

test("an exported Hugging Face checkpoint serves the PyTorch model's greedy continuation", async () => {
  const dir = mkdtempSync(join(tmpdir(), "nfcot-hf-serve-"));
  try {
    const r = runPython([
      "-m",
      "nfcot.hf_parity",
      "--arch",
      "qwen3",
      "--work",
      dir,
      "--seed",
      "3",
      "--prompt",
      PROMPT,
      "--max-tokens",
      "12",
    ]);
    assert.equal(r.status, 0, r.output);
    const want = JSON.parse(readFileSync(join(dir, "case.json"), "utf8")).greedy;
    assert.equal(want.ids.length, 12); // fixed seed: no eos within 12 tokens
    const s = await startServer({ modelDir: join(dir, "out") });
    try {
      const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "none" });
      const models = await client.models.list();
      assert.equal(models.data.length, 1);
      const c = await client.completions.create({
        model: s.app.modelName,
        prompt: PROMPT,
        temperature: 0,
        max_tokens: 12,
      });
      assert.equal(c.choices[0]!.finish_reason, want.finish_reason);
      assert.equal(c.usage!.prompt_tokens, want.prompt_ids.length);
      assert.equal(c.usage!.completion_tokens, want.ids.length);
      assert.equal(c.choices[0]!.text, want.text);
    } finally {
      await s.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
