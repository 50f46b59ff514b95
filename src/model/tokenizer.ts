import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { byteLevelDecoder } from "./byte-level.ts";
import { ChatTemplate, type RenderOptions, type TemplateMessage } from "./chat-template.ts";
import type { Manifest } from "./manifest.ts";
import { escapeRegExp, UserTextGuard } from "./user-text.ts";

export type { TemplateMessage as ChatMessage } from "./chat-template.ts";

interface AddedTokenJson {
  id: number;
  content: string;
  special: boolean;
  lstrip?: boolean;
  rstrip?: boolean;
}

/** The model's HF tokenizer.json (any model type: byte-level BPE, word level, ...) through
 * @huggingface/tokenizers, and its chat template. */
export class ModelTokenizer {
  private readonly tok: Tokenizer;
  /** The same tokenizer without its special tokens, for chat prompts (where a special token is
   * text unless the template wrote it). */
  private plainTok: Tokenizer | null = null;
  private readonly makePlain: () => Tokenizer;
  private readonly specials: Map<string, AddedTokenJson>;
  private readonly specialMatch: RegExp | null;
  private readonly guard: UserTextGuard;
  /** A tokenizer.json without a decoder (word-level vocabularies) decodes by joining tokens with spaces. */
  private readonly joinsWithSpaces: boolean;
  /** Byte-level BPE: vocabulary characters -> bytes (null for other tokenizers). */
  private readonly byteLevel: Map<string, number> | null;
  private readonly addedIds: Set<number>;
  private readonly utf8 = new TextDecoder("utf-8");
  readonly template: ChatTemplate;
  readonly specialIds: Set<number>;

  /** `chat: false` (the engine worker, which only decodes) skips building the chat encoder. */
  constructor(
    dir: string,
    manifest: Pick<Manifest, "tokenizer" | "tokenizer_config" | "chat_template">,
    opts: { chat?: boolean } = {},
  ) {
    const json = JSON.parse(readFileSync(join(dir, manifest.tokenizer), "utf8"));
    const config = JSON.parse(readFileSync(join(dir, manifest.tokenizer_config), "utf8"));
    this.tok = new Tokenizer(json, config);
    const added = json.added_tokens as AddedTokenJson[];
    const special = added.filter((t) => t.special);
    this.specials = new Map(special.map((t) => [t.content, t]));
    this.specialIds = new Set(special.map((t) => t.id));
    this.makePlain = () => new Tokenizer(withoutSpecials(json, special), config);
    if (opts.chat !== false) this.plainTok = this.makePlain();
    const alternatives = [...this.specials.keys()].sort((a, b) => b.length - a.length).map(escapeRegExp);
    this.specialMatch = alternatives.length ? new RegExp(alternatives.join("|"), "g") : null;
    this.guard = new UserTextGuard([...this.specials.keys()]);
    this.joinsWithSpaces = json.decoder === null || json.decoder === undefined;
    this.byteLevel = json.decoder?.type === "ByteLevel" ? byteLevelDecoder() : null;
    this.addedIds = new Set(added.map((t) => t.id));
    this.template = new ChatTemplate(readFileSync(join(dir, manifest.chat_template), "utf8"), config);
  }

  private get plain(): Tokenizer {
    this.plainTok ??= this.makePlain();
    return this.plainTok;
  }

  /** Raw text (a completions prompt, /tokenize's prompt): special-token strings are control
   * tokens, as vLLM and Hugging Face encode prompts. */
  encode(text: string): number[] {
    return this.tok.encode(text, { add_special_tokens: false }).ids;
  }

  /** The messages through the chat template, tokenized so that only the special tokens the
   * template wrote are control tokens: one typed in a message is encoded as plain text. */
  encodeChat(messages: readonly TemplateMessage[], opts: RenderOptions): number[] {
    const { text, protectedRanges } = this.guard.restore(
      this.template.render(
        messages.map((m) => this.protectMessage(m)),
        opts,
      ),
    );
    return this.encodeGuarded(text, protectedRanges);
  }

  /** Text as a chat message's content encodes (special-token strings stay text): an answer the
   * model generated, re-tokenized to carry it back into a prompt. */
  encodeText(text: string): number[] {
    return text.length > 0 ? this.plain.encode(text, { add_special_tokens: false }).ids : [];
  }

  /** The rendered prompt text (what encodeChat tokenizes). */
  renderChat(messages: readonly TemplateMessage[], opts: RenderOptions): string {
    return this.guard.restore(
      this.template.render(
        messages.map((m) => this.protectMessage(m)),
        opts,
      ),
    ).text;
  }

  /** Splits at special tokens outside the protected ranges (as the tokenizer splits at added
   * tokens, honouring their lstrip/rstrip) and encodes the text between them without specials. */
  private encodeGuarded(text: string, protectedRanges: [number, number][]): number[] {
    const pieces: (string | AddedTokenJson)[] = [];
    let last = 0;
    if (this.specialMatch) {
      for (const m of text.matchAll(this.specialMatch)) {
        const start = m.index!;
        const end = start + m[0].length;
        if (protectedRanges.some(([a, b]) => start < b && a < end)) continue;
        pieces.push(text.slice(last, start), this.specials.get(m[0])!);
        last = end;
      }
    }
    pieces.push(text.slice(last));
    const ids: number[] = [];
    pieces.forEach((p, i) => {
      if (typeof p !== "string") return void ids.push(p.id);
      let s = p;
      const before = pieces[i - 1];
      const after = pieces[i + 1];
      if (typeof before === "object" && before.rstrip) s = s.trimStart();
      if (typeof after === "object" && after.lstrip) s = s.trimEnd();
      if (s.length > 0) ids.push(...this.plain.encode(s, { add_special_tokens: false }).ids);
    });
    return ids;
  }

  private protectMessage(m: TemplateMessage): TemplateMessage {
    const c = m.content;
    const content =
      typeof c === "string"
        ? this.guard.protect(c)
        : Array.isArray(c)
          ? c.map((p) => ({ ...p, text: this.guard.protect(p.text) }))
          : c;
    return { ...m, content };
  }

  /** Text of `ids` as the tokenizer's decoder makes it (byte-level BPE: exact bytes, U+FFFD
   * where they are not valid UTF-8). Special tokens are dropped unless skipSpecial is false. */
  decode(ids: number[], skipSpecial = true): string {
    const kept = skipSpecial ? ids.filter((i) => !this.specialIds.has(i)) : ids;
    if (kept.length === 0) return "";
    const text = this.tok.decode(kept, { skip_special_tokens: false });
    // Word-level vocabularies carry no spacing: tokens are joined by spaces, none around newlines.
    return this.joinsWithSpaces ? text.replace(/ ?\n ?/g, "\n") : text;
  }

  /** One token as text (logprobs, scored answers): a byte-level token's bytes as UTF-8 (U+FFFD
   * for part of a character: tokenBytes has them), else its vocabulary entry. */
  tokenText(id: number): string {
    return this.byteLevel ? this.utf8.decode(Uint8Array.from(this.tokenBytes(id))) : (this.tok.id_to_token(id) ?? "");
  }

  /** The bytes a token stands for (OpenAI's logprobs `bytes`). */
  tokenBytes(id: number): number[] {
    const t = this.tok.id_to_token(id);
    if (t === undefined) return [];
    if (this.byteLevel && !this.addedIds.has(id)) return [...t].map((c) => this.byteLevel!.get(c) ?? 0x3f);
    return [...Buffer.from(t, "utf8")];
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
}

interface TokenizerJson {
  model?: { unk_token?: string; vocab?: Record<string, number> | unknown[] };
  added_tokens: AddedTokenJson[];
  [key: string]: unknown;
}

/** tokenizer.json without its special added tokens, in added_tokens and in the model's vocab (a
 * word-level vocabulary lists them as words): their strings then encode as ordinary text. */
function withoutSpecials(json: TokenizerJson, special: AddedTokenJson[]): Record<string, unknown> {
  // The unk token stays: the model maps unknown words to it.
  const names = new Set(special.map((t) => t.content).filter((c) => c !== json.model?.unk_token));
  const model = { ...json.model };
  if (model.vocab && !Array.isArray(model.vocab)) {
    model.vocab = Object.fromEntries(
      Object.entries(model.vocab as Record<string, number>).filter(([k]) => !names.has(k)),
    );
  }
  return { ...json, model, added_tokens: json.added_tokens.filter((t) => !t.special) };
}
