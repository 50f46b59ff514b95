import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { test } from "node:test";
import pino from "pino";
import { engineLog } from "../src/ops/engine-log.ts";

/** server.ts hands the engine this mapping: the engine's lines keep the level it chose, so a
 * failed step is an error line with its request ids, never info with phase "load". */

test("engine lines keep their level and fields on the server's pino logger", () => {
  const lines: any[] = [];
  const stream = new Writable({
    write: (c: Buffer, _e, done) => {
      lines.push(JSON.parse(c.toString()));
      done();
    },
  });
  const log = engineLog(pino({ level: "info" }, stream));
  log("info", "loading graphs (cpu)", { phase: "load" });
  log("error", "engine step failed for 1 request(s); they failed alone, the others go on", {
    requestIds: ["chatcmpl-x-0"],
    err: {
      message: "indices element out of data bounds",
      stack: "Error: indices element out of data bounds\n    at forward",
    },
  });
  log("warn", "the KV pool holds 64 positions");
  assert.deepEqual(
    lines.map((l) => [l.level, l.msg, l.phase]),
    [
      [30, "loading graphs (cpu)", "load"],
      [50, "engine step failed for 1 request(s); they failed alone, the others go on", undefined],
      [40, "the KV pool holds 64 positions", undefined],
    ],
  );
  assert.deepEqual(lines[1].requestIds, ["chatcmpl-x-0"]);
  assert.match(lines[1].err.stack, /at forward/);
});
