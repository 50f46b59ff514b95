import { timingSafeEqual } from "node:crypto";
import type { FastifyInstance } from "fastify";
import { ServeError } from "../errors.ts";

/** API keys: when configured, every /v1/* route needs `Authorization: Bearer <key>`. Health,
 * metrics, docs and the tokenizer routes stay open. Runs in onRequest, before the body is read. */

function matches(given: string, keys: Buffer[]): boolean {
  const g = Buffer.from(given);
  // Compare against every key in constant time, so timing tells nothing about which one is close.
  let ok = false;
  for (const k of keys) if (k.length === g.length && timingSafeEqual(k, g)) ok = true;
  return ok;
}

export function registerAuth(app: FastifyInstance, apiKeys: string[]): void {
  if (apiKeys.length === 0) return;
  const keys = apiKeys.map((k) => Buffer.from(k));
  app.addHook("onRequest", async (request) => {
    if (!request.url.startsWith("/v1/") && request.url !== "/v1") return;
    // Browsers send CORS preflights without credentials.
    if (request.method === "OPTIONS") return;
    const header = request.headers.authorization ?? "";
    const m = /^Bearer\s+(.+)$/i.exec(header);
    if (!m) {
      throw new ServeError("invalid_api_key", "Missing API key: send an Authorization: Bearer <key> header.");
    }
    if (!matches(m[1]!.trim(), keys)) throw new ServeError("invalid_api_key", "Incorrect API key provided.");
  });
}
