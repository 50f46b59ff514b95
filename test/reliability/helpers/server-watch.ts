import type { Server } from "node:http";

/** Watches an in-process server from the outside: the status of every response it sends (so a
 * 5xx anywhere is seen, whichever client got it), and the process's unhandled rejections and
 * uncaught exceptions (the server runs in this process). */

export class ServerWatch {
  readonly statuses = new Map<number, number>();
  readonly rejections: unknown[] = [];
  readonly exceptions: unknown[] = [];
  private readonly onRejection = (e: unknown) => void this.rejections.push(e);
  private readonly onException = (e: unknown) => void this.exceptions.push(e);

  constructor(server: Server) {
    server.on("request", (_req, res) => {
      res.once("finish", () => this.statuses.set(res.statusCode, (this.statuses.get(res.statusCode) ?? 0) + 1));
    });
    process.on("unhandledRejection", this.onRejection);
    process.on("uncaughtExceptionMonitor", this.onException);
  }

  count(pred: (status: number) => boolean): number {
    let n = 0;
    for (const [s, c] of this.statuses) if (pred(s)) n += c;
    return n;
  }

  get serverErrors(): number {
    return this.count((s) => s >= 500);
  }

  stop(): void {
    process.off("unhandledRejection", this.onRejection);
    process.off("uncaughtExceptionMonitor", this.onException);
  }
}
