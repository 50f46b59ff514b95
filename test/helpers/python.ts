import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

export const MODELS_DIR = fileURLToPath(new URL("../../models", import.meta.url));
export const SHIPPED_MODEL = fileURLToPath(new URL("../../models/nfcot-trace-small", import.meta.url));
/** Debian's python3 carries python3-torch (serving-notes); a pyenv python on PATH does not. */
export const PYTHON = "/usr/bin/python3";

export function runPython(args: string[], timeoutMs = 300_000): { status: number | null; output: string } {
  const r = spawnSync(PYTHON, args, { cwd: MODELS_DIR, encoding: "utf8", timeout: timeoutMs });
  return { status: r.status, output: `${r.stdout ?? ""}${r.stderr ?? ""}` };
}
