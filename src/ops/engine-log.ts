import type { Logger } from "pino";
import type { EngineLog } from "../engine/client.ts";

/** The engine's lines on the server's logger, at the level the engine chose (a failed step is an
 * error with its request ids, load progress is info). */
export function engineLog(log: Pick<Logger, "info" | "warn" | "error">): EngineLog {
  return (level, message, fields = {}) => log[level](fields, message);
}
