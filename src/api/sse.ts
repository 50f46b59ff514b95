import { Readable } from "node:stream";
import type { FastifyReply } from "fastify";
import { toServeError } from "./error-handler.ts";

/** Server-sent events in OpenAI's dialect: `data: <json>` lines, `data: [DONE]` at the end, and
 * after the headers are out, an error is a data chunk {error: {...}} (the SDKs throw it). */

export const SSE_DONE = "data: [DONE]\n\n";

/** An event stream in the OpenAPI document (OpenAPI 3.2's itemSchema, one event): each event's
 * data is a `chunk` object as JSON, an error {error: {...}} after the stream has started, or the
 * final [DONE]. */
export function sseContent(chunk: string): Record<string, unknown> {
  return {
    // OpenAPI 3.2: `schema` is the whole stream, read as an array of events.
    schema: { type: "array", description: "The stream's events, in order." },
    itemSchema: {
      type: "object",
      required: ["data"],
      description: `Server-sent events (with stream: true): \`data: <${chunk} as JSON>\` events, then \`data: [DONE]\`.`,
      properties: {
        data: {
          anyOf: [
            {
              type: "string",
              contentMediaType: "application/json",
              contentSchema: { anyOf: [{ $ref: `${chunk}#` }, { $ref: "ErrorResponse#" }] },
            },
            { const: "[DONE]" },
          ],
        },
      },
    },
  };
}

/** A generation route's 200: the whole object as JSON, or with stream: true its chunks as events. */
export function jsonOrEventStream(description: string, json: string, chunk: string): Record<string, unknown> {
  return {
    description,
    content: {
      "application/json": { schema: { $ref: `${json}#` } },
      "text/event-stream": sseContent(chunk),
    },
  };
}

/** A named event (the Responses API's dialect): `event: <type>` then its data. */
export function sseEvent(obj: { type: string; [field: string]: unknown }): string {
  return `event: ${obj.type}\ndata: ${JSON.stringify(obj)}\n\n`;
}

export function sseData(obj: unknown): string {
  return `data: ${JSON.stringify(obj)}\n\n`;
}

/** Chunks of one stream share everything but their choice: serialize the rest once. */
export function chunkEncoder(
  head: Record<string, unknown>,
  tail: Record<string, unknown> = {},
): (choice: unknown) => string {
  const prefix = `data: ${JSON.stringify(head).slice(0, -1)},"choices":[`;
  const rest = JSON.stringify(tail).slice(1, -1);
  const suffix = `]${rest ? `,${rest}` : ""}}\n\n`;
  return (choice) => prefix + JSON.stringify(choice) + suffix;
}

async function* guarded(source: AsyncGenerator<string>, reply: FastifyReply): AsyncGenerator<string> {
  try {
    yield* source;
  } catch (err) {
    const e = toServeError(err);
    if (e.status >= 500) reply.log.error({ err }, "stream failed");
    // The status line already said 200: the ops plugin counts the failure by this code.
    reply.request.streamFailure = e.code;
    yield sseData(e.toBody());
    yield SSE_DONE;
  }
}

/** Sends the stream through Fastify (so hooks still see the reply). When the client goes away
 * Fastify destroys the stream, which returns the generator: its finally blocks free the work. */
export function sendEventStream(reply: FastifyReply, source: AsyncGenerator<string>): FastifyReply {
  reply
    .code(200)
    .header("content-type", "text/event-stream; charset=utf-8")
    .header("cache-control", "no-cache")
    .header("x-accel-buffering", "no");
  const stream = Readable.from(guarded(source, reply), { objectMode: false });
  return reply.send(stream);
}
