import type { Socket } from "node:net";
import type { FastifyInstance } from "fastify";
import { ServeError } from "../errors.ts";

/** Broken HTTP framing (a garbage request line, a bad Content-Length) never reaches a route, so
 * Fastify's default answer is not in the OpenAI shape: write it ourselves on the raw socket. */
export function clientErrorHandler(err: Error & { code?: string }, socket: Socket): void {
  if (!socket.writable) return void socket.destroy();
  const tooLarge = err.code === "HPE_HEADER_OVERFLOW";
  const e = tooLarge
    ? new ServeError("payload_too_large", "The request headers are too large.")
    : new ServeError("invalid_request", `Malformed HTTP request (${err.code ?? "parse error"}).`);
  const body = JSON.stringify(e.toBody());
  socket.end(
    `HTTP/1.1 ${e.status} ${tooLarge ? "Request Header Fields Too Large" : "Bad Request"}\r\n` +
      `content-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `connection: close\r\n\r\n${body}`,
  );
}

/** Bodies are parsed as plain JSON: a compressed (or otherwise encoded) body is refused with 415
 * rather than misread. */
export function refuseContentEncoding(app: FastifyInstance): void {
  app.addHook("onRequest", async (req) => {
    const enc = req.headers["content-encoding"];
    if (enc !== undefined && enc.trim().toLowerCase() !== "identity") {
      throw new ServeError("unsupported_media_type", `Content-Encoding '${enc}' is not supported: send an uncompressed JSON body.`, "content-encoding");
    }
  });
}
