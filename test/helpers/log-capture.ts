import { Writable } from "node:stream";

/** Fastify logger options whose JSON lines land in `lines`, parsed (pino levels: 30 info,
 * 40 warn, 50 error). */
export function captureLogs(level = "info"): { logger: object; lines: Record<string, any>[] } {
  const lines: Record<string, any>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString("utf8").split("\n")) if (l.trim()) lines.push(JSON.parse(l));
      done();
    },
  });
  return { logger: { level, stream }, lines };
}
