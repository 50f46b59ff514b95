import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { Template } from "@huggingface/jinja";
import type { Manifest } from "./manifest.ts";
import type { ReasoningMode } from "../engine/types.ts";

export interface ChatMessage {
  role: "system" | "user" | "assistant" | "developer" | "tool";
  content: string;
}

/** The model's HF tokenizer.json and Jinja chat template. */
export class ModelTokenizer {
  private readonly tok: Tokenizer;
  private readonly template: Template;
  private readonly config: Record<string, unknown>;
  readonly specialIds: Set<number>;

  constructor(dir: string, manifest: Manifest) {
    const json = JSON.parse(readFileSync(join(dir, manifest.tokenizer), "utf8"));
    this.config = JSON.parse(readFileSync(join(dir, manifest.tokenizer_config), "utf8"));
    this.tok = new Tokenizer(json, this.config);
    this.template = new Template(readFileSync(join(dir, manifest.chat_template), "utf8"));
    this.specialIds = new Set(
      (json.added_tokens as { id: number; special: boolean }[]).filter((t) => t.special).map((t) => t.id),
    );
  }

  encode(text: string): number[] {
    return this.tok.encode(text, { add_special_tokens: false }).ids;
  }

  /** Words joined by spaces, none around newlines (word-level vocabularies have no spacing info). */
  decode(ids: number[], skipSpecial = true): string {
    const kept = skipSpecial ? ids.filter((i) => !this.specialIds.has(i)) : ids;
    if (kept.length === 0) return "";
    return this.tok.decode(kept, { skip_special_tokens: false }).replace(/ ?\n ?/g, "\n");
  }

  tokenText(id: number): string {
    return this.tok.id_to_token(id) ?? "";
  }

  /** Ids below `modelVocab` the tokenizer has no token for (Qwen pads its embedding past the
   * tokenizer): the model can score them, but they must never be sampled. */
  idsWithoutToken(modelVocab: number): number[] {
    const known = new Set(this.tok.get_vocab(true).values());
    const out: number[] = [];
    for (let id = 0; id < modelVocab; id++) if (!known.has(id)) out.push(id);
    return out;
  }

  get vocabSize(): number {
    return this.tok.get_vocab(true).size;
  }

  renderChat(messages: ChatMessage[], mode: ReasoningMode, addGenerationPrompt = true): string {
    return this.template.render({
      messages,
      add_generation_prompt: addGenerationPrompt,
      reasoning_mode: mode,
      bos_token: this.config["bos_token"] ?? "",
      eos_token: this.config["eos_token"] ?? "",
    });
  }
}
