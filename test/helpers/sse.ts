/** Reads an OpenAI-style event stream: the parsed `data:` objects and whether [DONE] ended it. */
export async function readSse(res: Response): Promise<{ chunks: any[]; done: boolean }> {
  const text = await res.text();
  const chunks: any[] = [];
  let done = false;
  for (const block of text.split("\n\n")) {
    if (!block.trim()) continue;
    if (!block.startsWith("data: ")) throw new Error(`not an SSE data line: ${block}`);
    const data = block.slice(6);
    if (data === "[DONE]") done = true;
    else chunks.push(JSON.parse(data));
  }
  return { chunks, done };
}

export function postJson(url: string, body: unknown, init: RequestInit = {}): Promise<Response> {
  return fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    ...init,
  });
}
