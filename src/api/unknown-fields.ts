import type { FastifyInstance } from "fastify";

/** Top-level body fields the matched route's body schema does not name are ignored, as vLLM
 * ignores them: with a warning in the log and the field names in a response header, so a client
 * can see that a parameter it sent had no effect. The route's own schema decides, not a list. */

export const IGNORED_FIELDS_HEADER = "x-ignored-fields";

type BodySchema = {
  $ref?: string;
  properties?: Record<string, unknown>;
  additionalProperties?: unknown;
  patternProperties?: unknown;
};

export function reportIgnoredFields(app: FastifyInstance): void {
  const known = new WeakMap<object, Set<string> | null>();
  const fieldsOf = (schema: BodySchema): Set<string> | null => {
    if (!known.has(schema)) {
      const resolved: BodySchema | undefined = schema.$ref
        ? (app.getSchema(schema.$ref.replace(/#$/, "")) as BodySchema | undefined)
        : schema;
      // A schema that takes any key (a map) has no unknown fields.
      const open =
        !resolved?.properties ||
        resolved.patternProperties !== undefined ||
        (resolved.additionalProperties !== undefined && resolved.additionalProperties !== true);
      known.set(schema, open ? null : new Set(Object.keys(resolved!.properties!)));
    }
    return known.get(schema)!;
  };
  // After validation: a request refused for its values is not reported for its extra fields.
  app.addHook("preHandler", async (request, reply) => {
    const schema = request.routeOptions.schema?.body as BodySchema | undefined;
    const body = request.body;
    if (!schema || typeof schema !== "object" || !body || typeof body !== "object" || Array.isArray(body)) return;
    const fields = fieldsOf(schema);
    if (!fields) return;
    const ignored = Object.keys(body).filter((k) => !fields.has(k));
    if (ignored.length === 0) return;
    request.log.warn(
      { ignoredFields: ignored },
      `The following fields were present in the request but ignored: ${ignored.join(", ")}`,
    );
    reply.header(IGNORED_FIELDS_HEADER, ignored.map(encodeURIComponent).join(", "));
  });
}
