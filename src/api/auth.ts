import { timingSafeEqual } from "node:crypto";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { ServeError } from "../errors.ts";

/** API keys: when configured, every route needs `Authorization: Bearer <key>` unless its own
 * registration says otherwise (`config.access`): deny by default. The
 * decision reads the route Fastify matched, never the URL text, so percent-encoded or
 * absolute-form request targets change nothing; an unmatched request (404, 405) needs the key too.
 * Runs in onRequest, before the body is read. */

export type RouteAccess = "public" | "docs" | "tokenizer" | "protected";

declare module "fastify" {
  interface FastifyContextConfig {
    /** Who may call the route when the server has API keys: "public" always; "docs" and
     * "tokenizer" when their flag opens them; anything else (and no value) needs the key. */
    access?: RouteAccess;
  }
}

export interface AuthOptions {
  apiKeys: string[];
  /** --public-docs: /docs and /openapi.json without a key. */
  publicDocs: boolean;
  /** --public-tokenizer: /tokenize and /detokenize without a key. */
  publicTokenizer: boolean;
}

function matches(given: string, keys: Buffer[]): boolean {
  const g = Buffer.from(given);
  // Compare against every key in constant time, so timing tells nothing about which one is close.
  let ok = false;
  for (const k of keys) if (k.length === g.length && timingSafeEqual(k, g)) ok = true;
  return ok;
}

export function isOpen(
  access: RouteAccess | undefined,
  opts: Pick<AuthOptions, "publicDocs" | "publicTokenizer">,
): boolean {
  if (access === "public") return true;
  if (access === "docs") return opts.publicDocs;
  if (access === "tokenizer") return opts.publicTokenizer;
  return false;
}

/** The matched route's access class; the 404 handler's context has none (protected). */
export function routeAccess(request: FastifyRequest): RouteAccess | undefined {
  return request.routeOptions.config?.access;
}

export function registerAuth(app: FastifyInstance, opts: AuthOptions): void {
  if (opts.apiKeys.length === 0) return;
  const keys = opts.apiKeys.map((k) => Buffer.from(k));
  app.addHook("onRequest", async (request) => {
    if (isOpen(routeAccess(request), opts)) return;
    const header = request.headers.authorization ?? "";
    const m = /^Bearer\s+(.+)$/i.exec(header);
    if (!m) {
      throw new ServeError("invalid_api_key", "Missing API key: send an Authorization: Bearer <key> header.");
    }
    if (!matches(m[1]!.trim(), keys)) throw new ServeError("invalid_api_key", "Incorrect API key provided.");
  });
}
