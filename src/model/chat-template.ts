import { Template } from "@huggingface/jinja";
import type { ReasoningMode } from "./manifest.ts";

/** The model's own Jinja chat template, rendered as Hugging Face's apply_chat_template does:
 * messages, tools, add_generation_prompt, the special-token strings of tokenizer_config.json
 * (bos_token, eos_token, ...), and extra template variables (vLLM's chat_template_kwargs, e.g.
 * Qwen3's enable_thinking). NF-CoT templates also read `reasoning_mode`. */

export interface TextPart {
  type: "text";
  text: string;
}

export interface TemplateMessage {
  role: string;
  content: string | TextPart[] | null;
  [field: string]: unknown; // name, tool_calls, tool_call_id, reasoning_content: passed through
}

export interface RenderOptions {
  mode: ReasoningMode;
  addGenerationPrompt?: boolean;
  tools?: unknown[];
  /** Extra template variables; a name the renderer sets itself is refused (see RESERVED). */
  kwargs?: Record<string, unknown>;
}

export class ChatTemplateError extends Error {
  constructor(
    message: string,
    readonly param: string | null = null,
  ) {
    super(message);
  }
}

export class ChatTemplate {
  private readonly template: Template;
  private readonly specials: Record<string, unknown>;
  /** The template loops over a message's content parts (multimodal-style); otherwise text parts
   * are joined with "\n" into one string, as vLLM does for string-content templates. */
  readonly takesContentParts: boolean;
  /** The template reads the `tools` variable: the model declares tool support this way (as
   * Hugging Face templates do); a request's tools are refused for one that does not. */
  readonly readsTools: boolean;

  constructor(
    readonly source: string,
    tokenizerConfig: Record<string, unknown>,
  ) {
    this.template = new Template(source);
    this.specials = specialTokenStrings(tokenizerConfig);
    // Inside {{ }} and {% %} only: the word in the template's literal text or comments is no read.
    this.readsTools = [...source.matchAll(/\{[{%]([\s\S]*?)[%}]\}/g)].some((m) => /\btools\b/.test(m[1]!));
    this.takesContentParts = /\{%-?\s*for\s+\w+\s+in\s+[\w.]*?(message|m|msg)(\.content|\[['"]content['"]\])/.test(
      source,
    );
  }

  /** Variables the renderer owns: chat_template_kwargs may not set them. */
  get reserved(): string[] {
    return ["messages", "tools", "add_generation_prompt", "reasoning_mode", ...Object.keys(this.specials)];
  }

  render(messages: readonly TemplateMessage[], opts: RenderOptions): string {
    const kwargs = opts.kwargs ?? {};
    for (const k of Object.keys(kwargs)) {
      if (this.reserved.includes(k))
        throw new ChatTemplateError(
          `chat_template_kwargs.${k} is set by the server and cannot be overridden.`,
          `chat_template_kwargs.${k}`,
        );
    }
    const context: Record<string, unknown> = {
      ...kwargs,
      ...this.specials,
      messages: messages.map((m) => this.shapeMessage(m)),
      add_generation_prompt: opts.addGenerationPrompt ?? true,
      reasoning_mode: opts.mode,
    };
    if (opts.tools !== undefined) context["tools"] = opts.tools;
    try {
      return this.template.render(context);
    } catch (e) {
      // Templates reject conversations they cannot express with raise_exception (e.g. roles out of order).
      throw new ChatTemplateError(
        `The model's chat template refused the messages: ${(e as Error).message}`,
        "messages",
      );
    }
  }

  private shapeMessage(m: TemplateMessage): TemplateMessage {
    const content = m.content;
    if (content === null) return { ...m, content: "" };
    if (typeof content === "string" || this.takesContentParts) return m;
    return { ...m, content: content.map((p) => p.text).join("\n") };
  }
}

/** tokenizer_config.json's special-token entries (bos_token, eos_token, pad_token, unk_token,
 * additional_special_tokens, ...) as the strings templates use. Values may be strings or
 * AddedToken objects ({content}); null entries (Qwen's bos_token) are left out. */
export function specialTokenStrings(config: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const text = (v: unknown): string | undefined =>
    typeof v === "string"
      ? v
      : v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string"
        ? (v as { content: string }).content
        : undefined;
  for (const [k, v] of Object.entries(config)) {
    if (k.endsWith("_token")) {
      const s = text(v);
      if (s !== undefined) out[k] = s;
    } else if (k === "additional_special_tokens" && Array.isArray(v)) {
      out[k] = v.map(text).filter((s) => s !== undefined);
    }
  }
  return out;
}
