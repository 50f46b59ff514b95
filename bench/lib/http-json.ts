import { request, type Dispatcher } from "undici";

/** One JSON request through undici, timed from send to the last byte of the response. */

export interface JsonResponse<T> {
  status: number;
  body: T;
  ms: number;
}

// biome-ignore lint/suspicious/noExplicitAny: a caller that reads a field or two needs no type
export async function fetchJson<T = any>(
  url: string,
  opts: { method?: "GET" | "POST"; body?: unknown; dispatcher?: Dispatcher; headers?: Record<string, string> } = {},
): Promise<JsonResponse<T>> {
  const t0 = performance.now();
  const res = await request(url, {
    method: opts.method ?? (opts.body === undefined ? "GET" : "POST"),
    headers: { ...(opts.body === undefined ? {} : { "content-type": "application/json" }), ...opts.headers },
    ...(opts.body === undefined ? {} : { body: JSON.stringify(opts.body) }),
    ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}),
  });
  const text = await res.body.text();
  const ms = performance.now() - t0;
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: the caller sees the text
  }
  return { status: res.statusCode, body: body as T, ms };
}
