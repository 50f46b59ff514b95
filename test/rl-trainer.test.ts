import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { MODELS_DIR, PYTHON } from "./helpers/python.ts";
import { startServer, type TestServer } from "./helpers/server.ts";

/** The RL trainer (python -m nfcot.rl) against a real server on a free port: every batch's
 * teacher-forced log-probs agree with the server's to 1e-3 (the trainer checks before each update
 * and stops otherwise), each update is pushed and named, the run resumes where it stopped, and a
 * server sampling from other weights than the trainer's stops it with the reason. */

const KEY = "rl-test-key";
let s: TestServer;
let dir: string;

/** Async: the server answering the trainer lives on this thread's event loop. */
function trainer(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(PYTHON, ["-m", "nfcot.rl", "--server", s.url, "--admin-key", KEY, ...args], { cwd: MODELS_DIR });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (out += d));
    p.on("close", (code) => resolve({ code, out }));
  });
}

const COMMON = [
  "--prompts",
  "3",
  // Six programs drawn, the three whose rewards differ first trained: the rows the update sees
  // are a subset of the rollouts, and their log-probs must still match the server's.
  "--oversample",
  "2",
  "--group",
  "8",
  "--eval-count",
  "6",
  "--kl-coef",
  "0.01",
  "--seed",
  "3",
  "--lengths",
  "task",
];

before(async () => {
  s = await startServer({ adminKey: KEY });
  dir = mkdtempSync(join(tmpdir(), "nfcot-rl-"));
});
after(async () => {
  await s.close();
  rmSync(dir, { recursive: true, force: true });
});

const updates = (out: string) =>
  [...out.matchAll(/^update (\d+) \| reward ([\d.]+) .*\|server - torch\| ([\d.e+-]+) .*\| (\S+)$/gm)].map((m) => ({
    step: Number(m[1]),
    reward: Number(m[2]),
    diff: Number(m[3]),
    version: m[4]!,
  }));

test("a short GRPO run: log-probs agree with the server on every batch, each update is pushed, the run resumes", {
  timeout: 600_000,
}, async () => {
  const out = join(dir, "run");
  const first = await trainer(["--out", out, "--steps", "2", ...COMMON]);
  assert.equal(first.code, 0, first.out);
  const u = updates(first.out);
  assert.deepEqual(
    u.map((x) => x.step),
    [1, 2],
    first.out,
  );
  for (const x of u) assert.ok(x.diff <= 1e-3 && x.diff >= 0, `update ${x.step}: |server - torch| ${x.diff}`);
  // The KL term makes every batch an update: each one exported and pushed under its own version.
  assert.deepEqual(
    u.map((x) => x.version),
    ["run-00001", "run-00002"],
  );
  const w = await (await fetch(`${s.url}/admin/weights`, { headers: { authorization: `Bearer ${KEY}` } })).json();
  assert.equal(w.version, "run-00002");
  assert.equal(w.model_dir, join(out, "weights", "run-00002"));
  assert.match(first.out, /^eval @ 0 \(v0/m);
  const png = readFileSync(join(out, "curve.png"));
  assert.equal(png.subarray(1, 4).toString(), "PNG");
  const run = JSON.parse(readFileSync(join(out, "run.json"), "utf8"));
  assert.match(run.commit, /^[0-9a-f]{40}$/);
  assert.equal(run.args.group, 8);
  assert.equal(run.args.oversample, 2);
  assert.equal(run.args.train, "all");
  assert.equal(run.args.admin_key, "***");
  assert.ok(!JSON.stringify(run).includes(KEY), "the admin key is not written down");
  assert.ok(!existsSync(join(out, "weights", "run-00001")), "superseded weights are removed");

  // Resumed: continues at update 3 from the saved state and the weights the server serves.
  const second = await trainer(["--out", out, "--steps", "3", ...COMMON]);
  assert.equal(second.code, 0, second.out);
  assert.deepEqual(
    updates(second.out).map((x) => x.step),
    [3],
    second.out,
  );
  const h = JSON.parse(readFileSync(join(out, "history.json"), "utf8"));
  assert.deepEqual(
    h.history.map((x: { step: number }) => x.step),
    [1, 2, 3],
  );
  // Validation at the start and at the end of each invocation, each over the 6 programs asked for.
  assert.deepEqual(
    h.evals.map((e: { step: number }) => e.step),
    [0, 2, 3],
  );
  for (const e of h.evals)
    for (const m of ["latent_greedy", "explicit", "none"])
      assert.ok(Math.abs(e[m] * 6 - Math.round(e[m] * 6)) < 1e-9, `${m} ${e[m]} is not a count out of 6`);
});

test("a server sampling from other weights than the trainer's stops the run before any update", {
  timeout: 300_000,
}, async () => {
  // The server serves run-00003 now; a fresh run starts from the shipped weights.
  const r = await trainer(["--out", join(dir, "other"), "--steps", "1", ...COMMON]);
  assert.notEqual(r.code, 0, r.out);
  assert.match(r.out, /log-prob mismatch on trajectory \d+: .* on the server \(weights run-00003\)/);
  assert.doesNotMatch(r.out, /^update 1/m);
});
