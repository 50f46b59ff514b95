import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { ServeError } from "../errors.ts";

/** Failures that never reach a route, answered in the OpenAI shape and counted like any other:
 * broken HTTP framing, a client too slow to send its request, an Expect header we cannot meet, a
 * URL the router cannot decode. `record` is the failure counter (by error code). */

export type RecordFailure = (code: string) => void;

const REASONS: Record<number, string> = {
  400: "Bad Request",
  408: "Request Timeout",
  413: "Payload Too Large",
  417: "Expectation Failed",
};

function rawResponse(e: ServeError): string {
  const body = JSON.stringify(e.toBody());
  return (
    `HTTP/1.1 ${e.status} ${REASONS[e.status] ?? "Error"}\r\n` +
    `content-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
    `connection: close\r\n\r\n${body}`
  );
}

export function clientErrorToServeError(err: Error & { code?: string }): ServeError {
  switch (err.code) {
    case "HPE_HEADER_OVERFLOW":
      return new ServeError("payload_too_large", "The request headers are too large.");
    // Node's requestTimeout/headersTimeout: the client sent its request too slowly, or nothing.
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return new ServeError("request_timeout", "The client took too long to send its request.");
    default:
      return new ServeError("invalid_request", `Malformed HTTP request (${err.code ?? "parse error"}).`);
  }
}

/** Node's clientError: Fastify's default answer is not in the OpenAI shape, so write it ourselves. */
export function clientErrorHandler(record: RecordFailure): (err: Error & { code?: string }, socket: Socket) => void {
  return (err, socket) => {
    const e = clientErrorToServeError(err);
    // A connection reset mid-request is not an answerable request.
    if (!socket.writable || err.code === "ECONNRESET") return void socket.destroy();
    record(e.code);
    socket.end(rawResponse(e));
  };
}

/** Node answers an unknown `Expect` itself (417, empty body); this is the same, in our shape. */
export function refuseExpectation(record: RecordFailure): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const e = new ServeError(
      "expectation_failed",
      `Expect: ${req.headers.expect} is not supported (only 100-continue).`,
      "expect",
    );
    record(e.code);
    const body = JSON.stringify(e.toBody());
    res.writeHead(e.status, {
      "content-type": "application/json; charset=utf-8",
      "content-length": Buffer.byteLength(body),
      connection: "close",
    });
    res.end(body);
  };
}

/** Fastify's frameworkErrors: a path the router cannot percent-decode (`/v1/models/%ff`), an
 * over-long parameter. No route matched, so nothing is revealed; no hook runs, so count here. */
export function frameworkErrorHandler(record: RecordFailure) {
  return (err: Error & { code?: string }, request: FastifyRequest, reply: FastifyReply): void => {
    const e =
      err.code === "FST_ERR_BAD_URL"
        ? new ServeError("invalid_request", "The request path is not valid percent-encoded UTF-8.")
        : new ServeError("invalid_request", `Invalid request path (${err.code ?? "router error"}).`);
    record(e.code);
    request.log.info({ code: err.code }, "bad request path");
    void reply.code(e.status).type("application/json; charset=utf-8").send(e.toBody());
  };
}

/** Bodies are parsed as plain JSON: a compressed (or otherwise encoded) body is refused with 415
 * rather than misread. */
export function refuseContentEncoding(app: FastifyInstance): void {
  app.addHook("onRequest", async (req) => {
    const enc = req.headers["content-encoding"];
    if (enc !== undefined && enc.trim().toLowerCase() !== "identity") {
      throw new ServeError(
        "unsupported_media_type",
        `Content-Encoding '${enc}' is not supported: send an uncompressed JSON body.`,
        "content-encoding",
      );
    }
  });
}
