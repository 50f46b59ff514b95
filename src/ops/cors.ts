import type { FastifyInstance } from "fastify";

/** CORS for config.corsOrigins ("*" = any origin; empty = no CORS headers, browsers refuse
 * cross-origin calls). Preflights are answered here, before authentication: browsers never send
 * the API key with a preflight. */

const METHODS = "GET, POST, OPTIONS";
const DEFAULT_HEADERS = "authorization, content-type, x-request-id";
// Browsers hide response headers from scripts unless listed.
const EXPOSED = "x-request-id, retry-after, x-ignored-fields";

export function registerCors(app: FastifyInstance, origins: string[]): void {
  if (origins.length === 0) return;
  const any = origins.includes("*");
  const allowed = new Set(origins.map((o) => o.replace(/\/$/, "")));
  app.addHook("onRequest", async (request, reply) => {
    const origin = request.headers.origin;
    if (!origin) return;
    // The answer depends on Origin, so caches must key on it.
    if (!any) reply.header("vary", "Origin");
    if (!any && !allowed.has(origin)) return;
    reply.header("access-control-allow-origin", any ? "*" : origin);
    reply.header("access-control-expose-headers", EXPOSED);
    const preflightMethod = request.headers["access-control-request-method"];
    if (request.method === "OPTIONS" && preflightMethod) {
      reply.header("access-control-allow-methods", METHODS);
      reply.header(
        "access-control-allow-headers",
        request.headers["access-control-request-headers"] ?? DEFAULT_HEADERS,
      );
      reply.header("access-control-max-age", "600");
      reply.code(204).send();
      return reply;
    }
  });
}
