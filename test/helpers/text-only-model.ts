import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { runPython, SHIPPED_MODEL } from "./python.ts";

const SCRIPT = fileURLToPath(new URL("./text_only_model.py", import.meta.url));

/** A text-only model directory made from the shipped one (see text_only_model.py). */
export function makeTextOnlyModel(opts: { padVocab?: number; eosIds?: number[] } = {}): string {
  const dir = join(mkdtempSync(join(tmpdir(), "nfcot-text-only-")), "text-only");
  const args = [SCRIPT, SHIPPED_MODEL, dir];
  if (opts.padVocab) args.push("--pad-vocab", String(opts.padVocab));
  if (opts.eosIds) args.push("--eos-ids", opts.eosIds.join(","));
  const r = runPython(args, 120_000);
  if (r.status !== 0) throw new Error(`text_only_model.py failed: ${r.output}`);
  return dir;
}
