import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { after, test } from "node:test";
import { startServerProcess, type ServerProcess } from "../../bench/lib/server-process.ts";
import { FULL, report, scaled } from "./helpers/scale.ts";

/** A schema-driven fuzzer against the live server: Schemathesis reads the server's own
 * /openapi.json and sends the document's examples, boundary and coverage cases, and random
 * requests (valid and invalid by the document) to every operation, with the API key. It must find
 * nothing: no 5xx, no response (status, headers, content type, body, every SSE event) that the
 * document does not describe, no invalid request accepted, no valid one refused (the stricter
 * check in fuzz/schemathesis_hooks.py, which names the only refusals allowed), no wrong answer to an
 * undocumented method, no operation served without the key. Installed by `npm run test:deps`. */

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const SCHEMATHESIS = `${ROOT}.fuzz-venv/bin/schemathesis`;
const KEY = "sk-schema-fuzz";
const EXAMPLES = scaled(12, 150);
let server: ServerProcess | null = null;

after(async () => {
  if (server && server.child.exitCode === null) server.child.kill("SIGKILL");
});

function run(
  cmd: string,
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    child.on("close", (code) => resolve({ code, output }));
  });
}

test(`Schemathesis finds nothing: ${EXAMPLES} examples per operation, fixed seed`, {
  timeout: FULL ? 900_000 : 240_000,
}, async (t) => {
  assert.ok(existsSync(SCHEMATHESIS), `${SCHEMATHESIS} is missing: run \`npm run test:deps\``);
  server = await startServerProcess({ NFCOT_API_KEYS: KEY, NFCOT_THREADS: "1", NFCOT_KV_CACHE_BLOCKS: "256" });
  const args = [
    "run",
    `${server.url}/openapi.json`,
    "--header",
    `Authorization: Bearer ${KEY}`,
    "--checks",
    "all",
    // Replaced by the stricter documented_valid_requests_are_served (fuzz/schemathesis_hooks.py).
    "--exclude-checks",
    "positive_data_acceptance",
    "--phases",
    "examples,coverage,fuzzing",
    "--max-examples",
    String(EXAMPLES),
    "--workers",
    "1",
    "--no-color",
    ...(FULL ? ["--seed", "1", "--generation-database", "none"] : ["--generation-deterministic"]),
  ];
  const r = await run(SCHEMATHESIS, args, {
    SCHEMATHESIS_HOOKS: "schemathesis_hooks",
    PYTHONPATH: `${ROOT}test/reliability/fuzz`,
    NFCOT_FUZZ_KEY: KEY,
  });
  const generated = Number(/(\d+) generated/.exec(r.output)?.[1] ?? NaN);
  const operations = Number(/Tested: (\d+)/.exec(r.output)?.[1] ?? NaN);
  report(t, "schema fuzz", { operations, generated, exit: r.code ?? "signal" });
  assert.equal(r.code, 0, `Schemathesis found issues:\n${r.output.slice(-20_000)}`);
  assert.match(r.output, /No issues found/);
  assert.equal(operations, 12, "every documented operation was tested");
  assert.ok(generated > EXAMPLES * 5, `${generated} test cases were generated`);
  // The server is still healthy and ready after everything it was sent.
  assert.equal((await fetch(`${server.url}/ready`)).status, 200);
  assert.equal(await server.stop(), 0);
});
