import { ServeError } from "../errors.ts";

/** Whether the server takes new work: server.ts flips `ready` once loaded and `draining` on
 * SIGTERM; readiness, the routes and the drain read it. One object, shared by api/ and ops/. */
export interface ServeState {
  ready: boolean;
  draining: boolean;
}

/** 503 while draining: Retry-After sends the client to another replica. */
export function shuttingDown(retryAfterSeconds: number): ServeError {
  return new ServeError(
    "shutting_down",
    "The server is shutting down and accepts no new requests.",
    null,
    retryAfterSeconds,
  );
}
