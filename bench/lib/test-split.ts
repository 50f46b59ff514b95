import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** The task's test split (models/data/test.jsonl, written by `python -m nfcot.task test 1000`):
 * benchmark prompts are its programs, in file order, so every run and mode sees the same ones. */

export interface TestProgram {
  source: string;
  answer: number;
  n: number;
  trace: string;
}

export const TEST_SPLIT_PATH = fileURLToPath(new URL("../../models/data/test.jsonl", import.meta.url));

export function loadTestSplit(path = TEST_SPLIT_PATH): TestProgram[] {
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as TestProgram);
}

/** The first `count` programs, cycling when more are asked for than the split holds. */
export function takePrograms(all: TestProgram[], count: number, offset = 0): TestProgram[] {
  if (all.length === 0) throw new Error("the test split is empty");
  return Array.from({ length: count }, (_, i) => all[(offset + i) % all.length]!);
}
