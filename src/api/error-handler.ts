import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { ServeError } from "../errors.ts";
import { sendError } from "../http/error-response.ts";

/** Every failure leaves in the OpenAI shape {error: {message, type, param, code}}: ServeErrors as
 * they are, Fastify's own (validation, body limit, bad JSON, media type) mapped once here. */

interface AjvError {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
  message?: string;
  schemaPath?: string;
  /** Ajv's verbose mode (app.ts): the keyword's value, the schema holding it, the data. */
  schema?: unknown;
  parentSchema?: Record<string, unknown>;
  data?: unknown;
}

/** `oneOf: [{required: [a]}, {required: [b]}]`: exactly one of the fields a and b. */
function exactlyOneOfFields(schema: unknown): string[] | null {
  if (!Array.isArray(schema)) return null;
  const fields = schema.map((b: { required?: unknown }) =>
    Array.isArray(b?.required) && b.required.length === 1 ? String(b.required[0]) : null,
  );
  return fields.every((f) => f !== null) ? (fields as string[]) : null;
}

/** Rules across fields, stated in the schema (schemas.ts): exactly one of some fields, and
 * if/then whose `then` describes itself. */
function crossFieldError(errors: AjvError[]): ServeError | null {
  for (const e of errors) {
    const fields = e.keyword === "oneOf" ? exactlyOneOfFields(e.schema) : null;
    if (fields) {
      const data = (e.data ?? {}) as Record<string, unknown>;
      const given = fields.filter((f) => data[f] !== undefined);
      const where = jsonPointerToParam(e.instancePath);
      const param = given[1] ?? fields[0]!;
      return new ServeError(
        "invalid_request",
        `Give exactly one of ${fields.map((f) => `'${f}'`).join(" and ")}.`,
        where ? `${where}.${param}` : param,
      );
    }
    // A failed `then` (Ajv stops at its first error): its description states the rule.
    const description = e.parentSchema?.["description"];
    if (e.schemaPath?.includes("/then/") && typeof description === "string") {
      const field = e.keyword === "required" ? String(e.params["missingProperty"]) : undefined;
      return new ServeError("invalid_request", description, jsonPointerToParam(e.instancePath, field));
    }
  }
  return null;
}

/** "/messages/0/content" -> "messages[0].content" (the OpenAI param convention). */
export function jsonPointerToParam(pointer: string, extra?: string): string | null {
  const parts = pointer
    .split("/")
    .slice(1)
    .map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
  if (extra !== undefined) parts.push(extra);
  let out = "";
  for (const p of parts) out += /^\d+$/.test(p) ? `[${p}]` : out ? `.${p}` : p;
  return out || null;
}

/** The most useful of Ajv's errors: with allErrors off, anyOf failures list each branch's error
 * and then the anyOf itself; the deepest path names the offending value best. */
export function validationToServeError(errors: AjvError[], context: string | undefined): ServeError {
  const cross = crossFieldError(errors);
  if (cross) return cross;
  const specific = errors.filter((e) => e.keyword !== "anyOf");
  const first = [...(specific.length ? specific : errors)].sort(
    (a, b) => b.instancePath.length - a.instancePath.length,
  )[0];
  if (!first) return new ServeError("invalid_request", "Invalid request.");
  const missing = first.keyword === "required" ? String(first.params["missingProperty"]) : undefined;
  const param = jsonPointerToParam(first.instancePath, missing);
  const where = context && context !== "body" ? `${context} ` : "";
  if (missing) return new ServeError("invalid_request", `Missing required ${where}parameter: '${param}'.`, param);
  if (!param)
    return new ServeError("invalid_request", `Invalid ${context ?? "request"}: ${first.message ?? "invalid"}.`, null);
  return new ServeError(
    "invalid_request",
    `Invalid value for ${where}'${param}': ${first.message ?? "invalid"}.`,
    param,
  );
}

/** Maps anything thrown in a request to a ServeError. */
export function toServeError(err: unknown, limits: { bodyLimit?: number } = {}): ServeError {
  if (err instanceof ServeError) return err;
  const e = err as FastifyError & { validation?: AjvError[]; validationContext?: string };
  if (Array.isArray(e.validation)) return validationToServeError(e.validation, e.validationContext);
  switch (e.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new ServeError(
        "payload_too_large",
        `The request body is larger than the server's limit${limits.bodyLimit ? ` of ${limits.bodyLimit} bytes` : ""}.`,
      );
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return new ServeError("unsupported_media_type", "Unsupported Content-Type: send application/json.");
    case "FST_ERR_CTP_INVALID_JSON_BODY":
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return new ServeError("invalid_request", "The request body is not valid JSON.");
  }
  // SyntaxError from JSON.parse carries statusCode 400 in Fastify's default parser.
  if (e instanceof SyntaxError)
    return new ServeError("invalid_request", `The request body is not valid JSON: ${e.message}`);
  if (typeof e.statusCode === "number" && e.statusCode >= 400 && e.statusCode < 500) {
    if (e.statusCode === 404) return new ServeError("not_found", e.message);
    if (e.statusCode === 413) return new ServeError("payload_too_large", e.message);
    if (e.statusCode === 415) return new ServeError("unsupported_media_type", e.message);
    return new ServeError("invalid_request", e.message);
  }
  return new ServeError("internal_error", "The server had an internal error.");
}

export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err, request, reply) => {
    const serveErr = toServeError(err, { bodyLimit: app.config.bodyLimit });
    // A 503 (draining, loading) is expected and retryable: one warn line, no stack. A client that
    // left first (499) is an abort, not a failure: one info line.
    if (serveErr.status === 503) request.log.warn({ code: serveErr.code }, serveErr.message);
    else if (serveErr.status === 499) request.log.info({ code: serveErr.code, statusCode: 499 }, serveErr.message);
    else if (serveErr.status >= 500) request.log.error({ err }, "request failed");
    return sendError(reply, serveErr);
  });
  app.setNotFoundHandler((request, reply) => sendError(reply, unmatched(app, request, reply)));
}

const METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] as const;

/** No route matched: 405 with Allow when the path has other methods, else 404. */
function unmatched(app: FastifyInstance, request: FastifyRequest, reply: FastifyReply): ServeError {
  const path = request.url.split("?")[0]!;
  const allowed = METHODS.filter((method) => app.findRoute({ method, url: path }) !== null);
  if (allowed.length === 0) return new ServeError("not_found", `Unknown route: ${request.method} ${path}.`);
  reply.header("allow", allowed.join(", "));
  return new ServeError(
    "method_not_allowed",
    `Method ${request.method} is not allowed on ${path}; allowed: ${allowed.join(", ")}.`,
  );
}

/** Unmatched requests are answered in onRequest, before their body is read or its media type
 * judged (an unknown method such as QUERY would otherwise get a 400 about its Content-Type).
 * Register after auth: without a key the answer is 401, which reveals nothing. */
export function refuseUnmatched(app: FastifyInstance): void {
  app.addHook("onRequest", async (request, reply) => {
    if (request.is404) throw unmatched(app, request, reply);
  });
}
