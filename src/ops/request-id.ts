import { randomUUID } from "node:crypto";
import type { FastifyInstance } from "fastify";

/** Request ids: a caller's (or a proxy's) x-request-id is kept when it is sane, else a UUID is
 * made. Fastify puts the id in every log line of the request (reqId) and it is echoed back in the
 * x-request-id response header, so a client's report finds the server's log lines. */

export const REQUEST_ID_HEADER = "x-request-id";
const SANE = /^[\w.:@/+=-]{1,128}$/;

export function requestIdFrom(header: string | string[] | undefined): string {
  const given = Array.isArray(header) ? header[0] : header;
  return given !== undefined && SANE.test(given) ? given : randomUUID();
}

export function registerRequestIds(app: FastifyInstance): void {
  app.setGenReqId((req) => requestIdFrom(req.headers[REQUEST_ID_HEADER]));
  app.addHook("onRequest", async (request, reply) => {
    reply.header(REQUEST_ID_HEADER, request.id);
  });
}
