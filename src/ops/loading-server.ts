import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { ServeError } from "../errors.ts";
import { requestIdFrom, REQUEST_ID_HEADER } from "./request-id.ts";

/** Answers on the service port while the model loads, so orchestrators see a live process that is
 * not ready yet (instead of a refused connection, which a liveness probe would treat as dead):
 * GET /health 200, everything else 503 not_ready with Retry-After. Closed, and the port handed
 * to the app, once the engine is up. */

export interface LoadingServer {
  port: number;
  close(): Promise<void>;
}

const LOADING = new ServeError("not_ready", "The model is loading.", null, 5);

export function startLoadingServer(host: string, port: number): Promise<LoadingServer> {
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const live = path === "/health" && (req.method === "GET" || req.method === "HEAD");
    const body = JSON.stringify(live ? { status: "ok" } : LOADING.toBody());
    res.writeHead(live ? 200 : 503, {
      "content-type": "application/json; charset=utf-8",
      "content-length": Buffer.byteLength(body),
      [REQUEST_ID_HEADER]: requestIdFrom(req.headers[REQUEST_ID_HEADER]),
      ...(live ? {} : { "retry-after": String(LOADING.retryAfterSeconds) }),
      // Keep-alive connections would pin this server open past its hand-over.
      connection: "close",
    });
    res.end(req.method === "HEAD" ? undefined : body);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host, port }, () => {
      server.off("error", reject);
      resolve({
        port: (server.address() as AddressInfo).port,
        close: () =>
          new Promise<void>((r) => {
            server.close(() => r());
            server.closeAllConnections();
          }),
      });
    });
  });
}
