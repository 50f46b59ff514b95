import { Type } from "@sinclair/typebox";
import type { FastifyReply } from "fastify";
import type { ServeError } from "../errors.ts";

/** Every failure leaves in the OpenAI shape {error: {message, type, param, code}}: the schema
 * (for the document) and the one function that sends it, with Retry-After when it has one. */

export const ErrorBody = {
  error: Type.Object({
    message: Type.String(),
    type: Type.String(),
    param: Type.Union([Type.String(), Type.Null()]),
    code: Type.String(),
  }),
};

/** Referenced as ErrorResponse# by the routes' documented errors. */
export const ErrorResponse = Type.Object(ErrorBody, { $id: "ErrorResponse", title: "ErrorResponse" });

export function sendError(reply: FastifyReply, err: ServeError): FastifyReply {
  if (err.retryAfterSeconds !== null) reply.header("retry-after", String(err.retryAfterSeconds));
  return reply.code(err.status).type("application/json; charset=utf-8").send(err.toBody());
}
