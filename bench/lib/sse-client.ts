import { request, type Dispatcher } from "undici";
import { SseParser } from "./sse-parser.ts";

/** One streamed chat completion through undici, timed the way vLLM's `bench serve` times it.
 * A "chunk" is an SSE event carrying generated output: a text delta or an NF-CoT thought (a
 * thought is a generated position like a token, so it counts for TTFT and ITL). The role chunk
 * sent before generation starts and the finish chunk carry no output and are not chunks.
 * Every event parsed from one network read gets that read's timestamp. */

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  completion_tokens_details?: { reasoning_tokens?: number };
  prompt_tokens_details?: { cached_tokens?: number };
}

export interface StreamOutcome {
  /** HTTP 200, no error event, [DONE] seen, not aborted. */
  ok: boolean;
  status: number;
  error: string | null;
  /** performance.now() when the request was sent. */
  startMs: number;
  /** First output chunk (text or thought) after the request was sent; null if none came. */
  ttftMs: number | null;
  /** Until the stream ended (or failed). */
  e2eMs: number;
  /** Every gap between consecutive output chunks. */
  itlMs: number[];
  text: string;
  thoughtChunks: number;
  textChunks: number;
  /** Chunks of reasoning text (delta.reasoning_content), kept apart from the answer's. */
  reasoningChunks: number;
  finishReason: string | null;
  done: boolean;
  usage: Usage | null;
  /** The error object of an error event, when the server sent one mid-stream. */
  errorBody: unknown;
  /** The completion's id, from the first chunk. */
  id: string | null;
}

export interface StreamOptions {
  dispatcher?: Dispatcher;
  signal?: AbortSignal;
  headers?: Record<string, string>;
  /** Called after each output chunk with the number seen so far (to cut streams on purpose). */
  onChunk?: (count: number) => void;
}

interface ChunkChoice {
  delta?: { content?: string | null; reasoning_content?: string | null };
  text?: string;
  thought?: unknown;
  finish_reason?: string | null;
}

export async function streamChatCompletion(
  baseUrl: string,
  body: Record<string, unknown>,
  opts: StreamOptions = {},
): Promise<StreamOutcome> {
  const out: StreamOutcome = {
    ok: false,
    status: 0,
    error: null,
    startMs: performance.now(),
    ttftMs: null,
    e2eMs: 0,
    itlMs: [],
    text: "",
    thoughtChunks: 0,
    textChunks: 0,
    reasoningChunks: 0,
    finishReason: null,
    done: false,
    usage: null,
    errorBody: null,
    id: null,
  };
  const payload = JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } });
  let last = 0;
  try {
    const res = await request(`${baseUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", ...opts.headers },
      body: payload,
      ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    out.status = res.statusCode;
    if (res.statusCode !== 200) {
      const text = await res.body.text();
      out.error = `HTTP ${res.statusCode}: ${text.slice(0, 300)}`;
      try {
        out.errorBody = JSON.parse(text);
      } catch {
        // not JSON: the text is in the error already
      }
      out.e2eMs = performance.now() - out.startMs;
      return out;
    }
    const parser = new SseParser();
    for await (const raw of res.body) {
      const now = performance.now();
      for (const data of parser.push(raw as Buffer)) {
        if (data === "[DONE]") {
          out.done = true;
          continue;
        }
        const chunk = JSON.parse(data) as {
          id?: string;
          choices?: ChunkChoice[];
          usage?: Usage | null;
          error?: { message?: string };
        };
        out.id ??= chunk.id ?? null;
        if (chunk.error) {
          out.errorBody = chunk;
          out.error = `error event: ${chunk.error.message ?? JSON.stringify(chunk.error)}`;
          continue;
        }
        if (chunk.usage) out.usage = chunk.usage;
        for (const c of chunk.choices ?? []) {
          const text = c.delta?.content ?? c.text ?? "";
          // Reasoning text (a trace split off the answer) is output too: it streams first.
          const reasoning = c.delta?.reasoning_content ?? "";
          if (reasoning !== "") out.reasoningChunks++;
          const isOutput = text !== "" || reasoning !== "" || c.thought !== undefined;
          if (c.thought !== undefined) out.thoughtChunks++;
          if (text !== "") {
            out.text += text;
            out.textChunks++;
          }
          if (c.finish_reason) out.finishReason = c.finish_reason;
          if (!isOutput) continue;
          if (out.ttftMs === null) out.ttftMs = now - out.startMs;
          else out.itlMs.push(now - last);
          last = now;
          opts.onChunk?.(out.textChunks + out.reasoningChunks + out.thoughtChunks);
        }
      }
    }
    const rest = parser.end();
    if (rest !== null) out.error ??= `the stream ended inside an event: ${rest.slice(0, 100)}`;
    if (!out.done) out.error ??= "the stream ended without [DONE]";
  } catch (e) {
    out.error = (e as Error).name === "AbortError" ? "aborted" : `${(e as Error).name}: ${(e as Error).message}`;
  }
  out.e2eMs = performance.now() - out.startMs;
  out.ok = out.error === null && out.status === 200 && out.done;
  return out;
}
