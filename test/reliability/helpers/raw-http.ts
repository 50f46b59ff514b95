import { connect } from "node:net";

/** HTTP/1.1 over a bare socket, for what a well-behaved client library will not send: broken
 * framing, lying Content-Length, bodies trickled or stalled. The response is read until the
 * server closes the connection (requests carry `Connection: close`) or the deadline passes. */

export interface RawResponse {
  /** 0 when no status line came back (connection cut or timed out first). */
  status: number;
  headers: Record<string, string>;
  body: string;
  /** The server closed (or reset) the connection before the deadline. */
  closedByServer: boolean;
  error: string | null;
}

export interface RawOptions {
  /** Pause between the pieces written. */
  gapMs?: number;
  /** Give up (and destroy the socket) after this long. */
  timeoutMs?: number;
  /** Destroy the socket after the last piece is written (a client that goes away). */
  hangUpAfterWrite?: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function rawRequest(port: number, pieces: (string | Buffer)[], opts: RawOptions = {}): Promise<RawResponse> {
  return new Promise((resolve) => {
    const sock = connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    let error: string | null = null;
    let closedByServer = false;
    let settled = false;
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(parse(Buffer.concat(chunks).toString("utf8"), closedByServer, error));
    };
    const timer = setTimeout(finish, opts.timeoutMs ?? 10_000);
    sock.on("data", (d) => chunks.push(d));
    sock.on("error", (e) => (error = (e as NodeJS.ErrnoException).code ?? e.message));
    sock.on("close", () => {
      closedByServer = !settled;
      finish();
    });
    sock.once("connect", async () => {
      for (let i = 0; i < pieces.length && !settled; i++) {
        if (i > 0 && opts.gapMs) await sleep(opts.gapMs);
        if (!sock.writable) break;
        sock.write(pieces[i]!);
      }
      if (opts.hangUpAfterWrite) finish();
    });
  });
}

function parse(text: string, closedByServer: boolean, error: string | null): RawResponse {
  const m = /^HTTP\/1\.[01] (\d{3})[^\r\n]*\r\n/.exec(text);
  if (!m) return { status: 0, headers: {}, body: "", closedByServer, error };
  const end = text.indexOf("\r\n\r\n");
  const headers: Record<string, string> = {};
  for (const line of text.slice(m[0].length, end).split("\r\n")) {
    const i = line.indexOf(":");
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  let body = end >= 0 ? text.slice(end + 4) : "";
  if (headers["transfer-encoding"] === "chunked") body = dechunk(body);
  return { status: Number(m[1]), headers, body, closedByServer, error };
}

function dechunk(s: string): string {
  let out = "";
  for (let i = 0; i < s.length; ) {
    const eol = s.indexOf("\r\n", i);
    if (eol < 0) break;
    const size = parseInt(s.slice(i, eol), 16);
    if (!(size > 0)) break;
    out += s.slice(eol + 2, eol + 2 + size);
    i = eol + 2 + size + 2;
  }
  return out;
}

/** A request head with Connection: close and, unless given, a matching Content-Length. */
export function head(
  method: string,
  path: string,
  headers: Record<string, string | number> = {},
  bodyLength?: number,
): string {
  const h: Record<string, string | number> = { host: "127.0.0.1", connection: "close", ...headers };
  if (
    bodyLength !== undefined &&
    !Object.keys(h).some((k) => k.toLowerCase() === "content-length" || k.toLowerCase() === "transfer-encoding")
  ) {
    h["content-length"] = bodyLength;
  }
  return `${method} ${path} HTTP/1.1\r\n${Object.entries(h)
    .map(([k, v]) => `${k}: ${v}`)
    .join("\r\n")}\r\n\r\n`;
}
