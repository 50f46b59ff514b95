import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** The install's behaviour is in package.json's allowScripts (npm 11's install-script policy): npm
 * runs esbuild's postinstall and never onnxruntime-node's, whose default on linux/x64 downloads the
 * CUDA provider. The CUDA image runs that installer itself (test/deploy-manifests.test.ts reads the
 * command); a real clean-clone `npm ci` is run there too ("the image's start command ..."). */

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const npm = (args: string[], cwd = ROOT) => spawnSync("npm", args, { cwd, encoding: "utf8", timeout: 60_000 });

test(".npmrc holds only settings npm knows (npm warns about any other, and will refuse them)", () => {
  // npm's own settings, listed outside the project (inside, the listing includes .npmrc's keys).
  const known = JSON.parse(npm(["config", "ls", "--long", "--json"], tmpdir()).stdout) as Record<string, unknown>;
  const keys = readFileSync(join(ROOT, ".npmrc"), "utf8")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#") && !l.startsWith(";"))
    .map((l) => l.split("=")[0]!.trim());
  assert.ok(keys.length > 0);
  for (const k of keys) assert.ok(k in known, `.npmrc sets '${k}', which is not an npm config`);
});

test("allowScripts covers every installed package with an install script: nothing pending review", () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
  assert.deepEqual(pkg.allowScripts, { esbuild: true, "onnxruntime-node": false });
  const ls = npm(["install-scripts", "ls"]);
  assert.equal(ls.status, 0, ls.stderr);
  assert.doesNotMatch(
    `${ls.stdout}${ls.stderr}`,
    /onnxruntime-node@|esbuild@/,
    "a script is not covered by allowScripts",
  );
  // Any npm command reads the project's config: none may warn about it.
  assert.doesNotMatch(ls.stderr, /Unknown (project|user|global|env) config/, ls.stderr);
});

test("onnxruntime-node's installer: skip exits at once, cuda12 on linux/x64 installs the provider the CUDA image checks", () => {
  const script = join(ROOT, "node_modules/onnxruntime-node/script/install.js");
  const env = { ...process.env, ONNXRUNTIME_NODE_INSTALL: "skip", npm_config_onnxruntime_node_install: "" };
  // No network here: the installer must exit before it would fetch anything.
  const r = spawnSync(process.execPath, [script], { encoding: "utf8", env, timeout: 20_000 });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  assert.equal(`${r.stdout}${r.stderr}`.trim(), "");
  const req = createRequire(script);
  const { parseInstallFlag } = req("./install-utils.js");
  const meta = req("./install-metadata.js");
  // What install.js selects under the CUDA image's command (ONNXRUNTIME_NODE_INSTALL=cuda12, run
  // directly, so no npm_* variables): 1.30's parseInstallFlag returns undefined for 'cuda12' (its
  // switch has no return for a named value), and install.js then installs the platform's default
  // manifest when a file of it is missing: on linux/x64 that is cuda12, the CUDA provider.
  const flagFor = (value: string) => {
    const saved = { a: process.env.ONNXRUNTIME_NODE_INSTALL, b: process.env.npm_config_onnxruntime_node_install };
    try {
      process.env.ONNXRUNTIME_NODE_INSTALL = value;
      delete process.env.npm_config_onnxruntime_node_install;
      return parseInstallFlag();
    } finally {
      for (const [k, v] of [
        ["ONNXRUNTIME_NODE_INSTALL", saved.a],
        ["npm_config_onnxruntime_node_install", saved.b],
      ] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  };
  assert.equal(flagFor("skip"), false);
  const cuda = flagFor("cuda12");
  assert.notEqual(cuda, false);
  const selected = typeof cuda === "string" ? cuda.split(",") : meta.requirements["linux/x64"];
  assert.deepEqual(selected, ["cuda12"]);
  const files = Object.keys(meta.manifests["linux/x64:cuda12"]);
  assert.ok(files.includes("./libonnxruntime_providers_cuda.so"), files.join(", "));
  // This checkout's install did not download it.
  assert.equal(
    existsSync(join(ROOT, "node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so")),
    false,
  );
});
